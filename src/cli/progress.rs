//! Progress bars on a terminal (indicatif): bytes, rate and ETA. Nothing when stderr is not a terminal or with -q.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ops::{Meter, Reporter};

pub struct Bars {
    enabled: bool,
}

impl Bars {
    pub fn new(enabled: bool) -> Self {
        Bars { enabled }
    }
}

struct Bar(ProgressBar);

impl Reporter for Bars {
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn Meter> {
        let pb = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        };
        if !self.enabled {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style =
            ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_message(label.to_string());
        Box::new(Bar(pb))
    }

    fn warn(&self, message: &str) {
        eprintln!("bakthat: warning: {message}");
    }
}

impl Meter for Bar {
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
