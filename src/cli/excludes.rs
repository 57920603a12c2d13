//! Exclude rules: `.bakthatexclude` and `.gitignore` at the top of the backed-up directory, plus `--exclude-file`,
//! merged into one matcher with gitignore semantics (the `ignore` crate): `#` comments, `!` negations, `/` anchors,
//! matches at path-component boundaries (bakthat 0.6 let the last file win and matched any suffix; see §14.8).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ignore::gitignore::GitignoreBuilder;

use crate::archive::pack::Filter;

/// Builds the filter for a backup of `source`, or `None` when there are no rules.
pub fn filter(source: &Path, extra: Option<&Path>) -> Result<Option<Filter>> {
    if !source.is_dir() {
        if let Some(x) = extra {
            if !x.is_file() {
                bail!("exclude file {} does not exist", x.display());
            }
        }
        return Ok(None);
    }
    let root = std::fs::canonicalize(source).with_context(|| format!("reading {}", source.display()))?;
    let mut b = GitignoreBuilder::new(&root);
    let mut any = false;
    for name in [".bakthatexclude", ".gitignore"] {
        let p = root.join(name);
        if p.is_file() {
            if let Some(e) = b.add(&p) {
                bail!("reading {}: {e}", p.display());
            }
            any = true;
        }
    }
    if let Some(x) = extra {
        if !x.is_file() {
            bail!("exclude file {} does not exist", x.display());
        }
        if let Some(e) = b.add(x) {
            bail!("reading {}: {e}", x.display());
        }
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let matcher = b.build().context("building the exclude rules")?;
    Ok(Some(Arc::new(move |path: &Path, is_dir: bool| !matcher.matched(path, is_dir).is_ignore())))
}
