# shellcheck shell=bash
# Sourced by the benchmark scripts: the corpus they share and the fresh restore targets they measure into.
#
#   bench_corpus DIR DONE [small]  builds the benchmark corpus in DIR unless the file DONE exists: a copy of /usr/share
#                                  and /usr/lib/python3 (small: /usr/share/doc and /usr/lib/python3/dist-packages);
#                                  writes DONE when it is complete
#   bench_fresh_out DIR            an empty restore target: with OUT_FS=ext4, a freshly made ext4 on the RAM-backed
#                                  loop image IMAGE mounted at DIR (so no restore pays for the files an earlier one
#                                  deleted: ext4 scans recently deleted inodes when it creates files); else a directory
#   bench_drop_out DIR             unmounts and removes a target, and the image
#   bench_unmount_outs DIR         unmounts every DIR/out-* and removes the image (for an EXIT trap)
# The caller sets OUT_FS (ext4 or dir) and IMAGE (a path under /dev/shm).

bench_corpus() {
    local dir=$1 done=$2 small=${3:-}
    [ -f "$done" ] && return 0
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$small" = small ]; then
        echo "== building a small corpus in $dir (/usr/share/doc, /usr/lib/python3/dist-packages)" >&2
        cp -a /usr/share/doc "$dir/doc"
        cp -a /usr/lib/python3/dist-packages "$dir/dist-packages"
    else
        echo "== building the corpus in $dir (cp -a /usr/share /usr/lib/python3)" >&2
        cp -a /usr/share "$dir/share"
        cp -a /usr/lib/python3 "$dir/python3"
    fi
    date -u +%FT%TZ >"$done"
}

bench_fresh_out() {
    if mountpoint -q "$1"; then umount "$1"; fi
    rm -rf "$1"
    mkdir -p "$1"
    [ "$OUT_FS" = ext4 ] || return 0
    rm -f "$IMAGE"
    truncate -s 4G "$IMAGE"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$IMAGE"
    mount -o loop "$IMAGE" "$1"
}

bench_drop_out() {
    if mountpoint -q "$1"; then umount "$1"; fi
    rm -rf "$1"
    rm -f "$IMAGE"
}

bench_unmount_outs() {
    local d
    for d in "$1"/out-*; do if mountpoint -q "$d"; then umount "$d"; fi; done
    rm -f "$IMAGE"
}
