//! The unit tests' allocator: the system allocator, plus a per-thread count of the bytes a thread holds (allocated
//! minus freed by that thread), so a test can measure what a structure really costs on the heap (the mount's
//! listing budget is checked against it). Test builds only; not a profiler (no call sites), not for other threads'
//! allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static HELD: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

/// What glibc's malloc takes for `n` bytes: a 16-byte aligned chunk with an 8-byte header, 32 bytes at least.
fn chunk(n: usize) -> i64 {
    ((n + 8 + 15) & !15).max(32) as i64
}

fn add(n: i64) {
    let _ = HELD.try_with(|h| {
        let now = h.get() + n;
        h.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is passed on to the system allocator unchanged; the count is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            add(chunk(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            add(chunk(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        add(-chunk(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            add(chunk(new_size) - chunk(layout.size()));
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes the current thread holds on the heap, as malloc chunks (what it allocated minus what it freed).
pub(crate) fn held() -> i64 {
    HELD.with(|h| h.get())
}

/// The most the current thread held since the last call (and starts the next period at what it holds now).
pub(crate) fn take_peak() -> i64 {
    let now = held();
    PEAK.with(|p| p.replace(now))
}
