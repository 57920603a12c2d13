//! Real kernel mounts of `bakthat mount`, driven by real tools.
