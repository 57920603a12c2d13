//! Exclude rules: `.bakthatexclude` and `.gitignore` at the top of the backed-up directory (unless `--no-ignore`),
//! `--exclude-file`, `--exclude PATTERN`, merged into one matcher with gitignore semantics (the `ignore` crate):
//! `#` comments, `!` negations, `/` anchors, matches at path-component boundaries (bakthat 0.6 let the last file win
//! and matched any suffix; see §14.8). Besides them `--exclude-if-present FILE` and `--exclude-caches`. Every path a
//! rule excludes is logged with the rule, so the backup can say how many and `-v` can list them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::archive::pack::Filter;

/// The first line of a valid `CACHEDIR.TAG` (the Cache Directory Tagging specification).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// The backup command's exclude options.
#[derive(Default, Debug, Clone)]
pub struct Rules {
    pub exclude_file: Option<PathBuf>,
    pub patterns: Vec<String>,
    pub if_present: Vec<String>,
    pub caches: bool,
    pub no_ignore: bool,
}

/// One excluded path and what excluded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// Relative to the source, with a trailing `/` for directories.
    pub path: String,
    /// Which kind of rule: `.gitignore`, `.bakthatexclude`, `--exclude-file`, `--exclude`, `--exclude-caches`,
    /// `--exclude-if-present`.
    pub by: String,
    /// The rule itself, for people (`.gitignore:3: build/`).
    pub rule: String,
}

/// The filter for the packer plus the log it writes.
pub struct Excludes {
    pub filter: Option<Filter>,
    /// By path: the backup walks the tree twice (the progress total, then the packer), each exclusion counts once.
    log: Arc<Mutex<BTreeMap<String, Excluded>>>,
}

impl Excludes {
    /// The excluded paths, sorted.
    pub fn excluded(&self) -> Vec<Excluded> {
        self.log.lock().map(|l| l.values().cloned().collect()).unwrap_or_default()
    }
}

struct Matcher {
    root: PathBuf,
    gitignore: Option<Gitignore>,
    /// Where each rule file came from, by path, for naming the rule (`.gitignore`, `--exclude-file`).
    sources: Vec<(PathBuf, String)>,
    if_present: Vec<String>,
    caches: bool,
    /// Directories known to hold a valid CACHEDIR.TAG.
    cache_dirs: Mutex<BTreeMap<PathBuf, bool>>,
}

impl Matcher {
    /// Why `path` is excluded, or `None` when it is stored.
    fn why(&self, path: &Path, is_dir: bool) -> Option<(String, String)> {
        if let Some(g) = &self.gitignore {
            if let ignore::Match::Ignore(glob) = g.matched(path, is_dir) {
                return Some(match glob.from() {
                    Some(from) => {
                        let by = self.sources.iter().find(|(p, _)| p == from).map(|(_, by)| by.clone());
                        let by = by.unwrap_or_else(|| from.display().to_string());
                        let line = line_of(from, glob.original());
                        let shown = if by == "--exclude-file" { from.display().to_string() } else { by.clone() };
                        let rule = match line {
                            Some(n) => format!("{shown}:{n}: {}", glob.original()),
                            None => format!("{shown}: {}", glob.original()),
                        };
                        (by, rule)
                    }
                    None => ("--exclude".into(), format!("--exclude {}", glob.original())),
                });
            }
        }
        if is_dir {
            if let Some(f) = self.if_present.iter().find(|f| path.join(f).symlink_metadata().is_ok()) {
                return Some(("--exclude-if-present".into(), format!("--exclude-if-present {f}")));
            }
        }
        if self.caches && path.file_name().is_some_and(|n| n != CACHEDIR_TAG) {
            if let Some(parent) = path.parent() {
                if self.is_cache_dir(parent) {
                    return Some((
                        "--exclude-caches".into(),
                        format!("--exclude-caches: {CACHEDIR_TAG} in its directory"),
                    ));
                }
            }
        }
        None
    }

    fn is_cache_dir(&self, dir: &Path) -> bool {
        let mut known = self.cache_dirs.lock().unwrap_or_else(|e| e.into_inner());
        *known.entry(dir.to_path_buf()).or_insert_with(|| has_cachedir_tag(dir))
    }

    fn relative(&self, path: &Path, is_dir: bool) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().into_owned();
        if is_dir {
            format!("{rel}/")
        } else {
            rel
        }
    }
}

/// A valid tag is a regular file (not a symlink) starting with the signature.
fn has_cachedir_tag(dir: &Path) -> bool {
    let tag = dir.join(CACHEDIR_TAG);
    if !tag.symlink_metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    fs::File::open(&tag).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == CACHEDIR_SIGNATURE
}

/// The 1-based line of `file` holding the rule `original` (the `ignore` crate does not keep line numbers).
fn line_of(file: &Path, original: &str) -> Option<usize> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().position(|l| l.trim_end() == original || l.trim() == original).map(|i| i + 1)
}

/// Builds the filter for a backup of `source` and the log of what it excludes; no filter when there are no rules.
pub fn filter(source: &Path, rules: &Rules) -> Result<Excludes> {
    let log = Arc::new(Mutex::new(BTreeMap::new()));
    if let Some(x) = &rules.exclude_file {
        if !x.is_file() {
            bail!("exclude file {} does not exist", x.display());
        }
    }
    if !source.is_dir() {
        return Ok(Excludes { filter: None, log });
    }
    let root = fs::canonicalize(source).with_context(|| format!("reading {}", source.display()))?;
    let mut b = GitignoreBuilder::new(&root);
    let mut sources = Vec::new();
    if !rules.no_ignore {
        for name in [".bakthatexclude", ".gitignore"] {
            let p = root.join(name);
            if p.is_file() {
                if let Some(e) = b.add(&p) {
                    bail!("reading {}: {e}", p.display());
                }
                sources.push((p, name.to_string()));
            }
        }
    }
    if let Some(x) = &rules.exclude_file {
        if let Some(e) = b.add(x) {
            bail!("reading {}: {e}", x.display());
        }
        sources.push((x.clone(), "--exclude-file".to_string()));
    }
    for p in &rules.patterns {
        b.add_line(None, p).with_context(|| format!("--exclude {p}"))?;
    }
    let gitignore = if sources.is_empty() && rules.patterns.is_empty() {
        None
    } else {
        Some(b.build().context("building the exclude rules")?)
    };
    if gitignore.is_none() && rules.if_present.is_empty() && !rules.caches {
        return Ok(Excludes { filter: None, log });
    }
    let m = Matcher {
        root,
        gitignore,
        sources,
        if_present: rules.if_present.clone(),
        caches: rules.caches,
        cache_dirs: Mutex::new(BTreeMap::new()),
    };
    let log2 = log.clone();
    let filter: Filter = Arc::new(move |path: &Path, is_dir: bool| match m.why(path, is_dir) {
        Some((by, rule)) => {
            let path = m.relative(path, is_dir);
            log2.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), Excluded { path, by, rule });
            false
        }
        None => true,
    });
    Ok(Excludes { filter: Some(filter), log })
}

/// The one-line summary: `excluded 14 paths (12 by .gitignore, 2 by --exclude); -v lists them`.
pub fn summary(excluded: &[Excluded], verbose: bool) -> Option<String> {
    if excluded.is_empty() {
        return None;
    }
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for e in excluded {
        *by.entry(e.by.as_str()).or_default() += 1;
    }
    let mut by: Vec<(&str, usize)> = by.into_iter().collect();
    by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = by.iter().map(|(k, n)| format!("{n} by {k}")).collect();
    let n = excluded.len();
    let noun = if n == 1 { "path" } else { "paths" };
    let tail = if verbose { "" } else { "; -v lists them" };
    Some(format!("excluded {n} {noun} ({}){tail}", parts.join(", ")))
}

/// One line per excluded path: `excluded build/ (.gitignore:3: build/)`.
pub fn listing(excluded: &[Excluded]) -> Vec<String> {
    excluded.iter().map(|e| format!("excluded {} ({})", e.path, e.rule)).collect()
}
