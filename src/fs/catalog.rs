//! The inventory's rows as the mount lists them: one compact [`Row`] per backup (row id, date, interned name and
//! tag set: 32 bytes), and the virtual directories laid out from them (`/by-name`, `/by-tag`, `/by-date`) with
//! inode numbers that survive a rebuild. The names inside those directories (timestamps, `name@HHMMSS`) and the
//! inode numbers of backup directories are computed when listed or looked up, never stored per backup, so a million
//! backups cost a few tens of bytes each. A rebuild also says which directories changed ([`Changes`]), so that the
//! kernel's caches of them can be dropped.
//!
//! Not here: a backup's own content (`tree.rs` expands it from its index), talking to the kernel (`crate::fuse`),
//! reading the inventory (`tree.rs` streams its rows into a [`Builder`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use crate::model::Epoch;

use super::tree::Listed;
use super::{names, Ino, Kind, ROOT};

/// Backup directories: `BACKUP_BASE + row id * PLACES + place`, where place 0 is `/by-name`, 1 is `/by-date` and
/// `2 + i` is `/by-tag` under the row's i-th tag (so a row's tags past the 62nd are not shown).
pub(super) const BACKUP_BASE: Ino = 1 << 42;
const PLACES: u64 = 64;
/// Inodes from here on belong to backups' content (`tree.rs`).
pub(super) const ENTRY_BASE: Ino = 1 << 62;
/// `latest` of the `/by-name/<name>` directory with inode `d` is `LATEST_BASE + d`.
pub(super) const LATEST_BASE: Ino = 1 << 36;
/// Virtual directories are numbered from [`ROOT`] up to here.
const DIRS_END: Ino = LATEST_BASE;
const DAY: i64 = 86_400;
const PLACE_NAME: u8 = 0;
const PLACE_DATE: u8 = 1;
const PLACE_TAG: u8 = 2;

/// One backup as the listing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Row {
    /// The inventory's row id (stable while the row exists).
    pub id: i64,
    pub date: Epoch,
    name: u32,
    tags: u32,
    /// Encrypted (the stored name or the row's metadata says so).
    pub enc: bool,
}

/// Named children, sorted by name.
type Named = Vec<(Box<[u8]>, Ino)>;
/// Rows by (tag, tag id, name, name id).
type ByTag<'a> = BTreeMap<(&'a [u8], u32, &'a [u8], u32), Vec<u32>>;
/// Day directories by year and month.
type Calendar = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Named>>;

/// What a virtual directory lists.
#[derive(Debug, Clone, PartialEq, Eq)]
enum List {
    /// Named subdirectories, sorted by name.
    Dirs(Named),
    /// Backups of one name, oldest first, each listed as its timestamp; `/by-name/<name>` also lists `latest`.
    Backups { place: Placing, rows: Vec<u32>, latest: bool },
    /// A day of `/by-date`: its backups as `name@HHMMSS`, by name then time.
    Day { start: Epoch, rows: Vec<u32> },
    /// `/incoming` (its content is the staging area, see `incoming.rs`).
    Incoming,
    /// `/versions/<name>`: its content is laid out from the name's backups by `versions.rs`; `of` is the
    /// `/by-name/<name>` directory, whose rows are the name's backups.
    Versions { of: Ino },
    /// A directory that existed before the last rebuild: its number is kept, it lists nothing and is not found.
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placing {
    Name,
    Tag(u32),
}

#[derive(Debug, Clone)]
struct VDir {
    parent: Ino,
    list: List,
    /// A hash of what it lists, compared between rebuilds.
    sig: u64,
}

/// What a virtual inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Virtual {
    /// A directory of the virtual tree (root, by-name…).
    Dir,
    /// `/incoming`.
    Incoming,
    /// `/versions/<name>` (see `versions.rs`).
    Versions,
    /// `latest` in a `/by-name/<name>` directory.
    Latest,
    /// A backup's directory: the row.
    Backup(Row),
}

/// Collects rows (in any order) for [`Catalog::build`].
#[derive(Default)]
pub(super) struct Builder {
    rows: Vec<Row>,
    names: Vec<Box<[u8]>>,
    tags: Vec<Box<[u8]>>,
    tagsets: Vec<Box<[u32]>>,
    ids: Interned,
}

/// The numbers given to names, tags and tag sets, by their text as the inventory has it (one entry per distinct
/// text: a few hundred, not one per row).
#[derive(Debug, Clone, Default)]
struct Interned {
    names: HashMap<String, u32>,
    tags: HashMap<String, u32>,
    tagsets: HashMap<String, u32>,
}

/// The number of `text` in `ids`, added (escaped, to `escaped`) if new.
fn intern(ids: &mut HashMap<String, u32>, escaped: &mut Vec<Box<[u8]>>, text: &str) -> u32 {
    if let Some(&n) = ids.get(text) {
        return n;
    }
    let n = escaped.len() as u32;
    escaped.push(names::escape(text).into_boxed_slice());
    ids.insert(text.to_string(), n);
    n
}

impl Builder {
    /// A builder holding the rows of `cat` already, to add the rows the inventory gained since (its names, tags
    /// and tag sets keep their numbers).
    pub fn from_catalog(cat: &Catalog) -> Builder {
        Builder {
            rows: cat.rows.clone(),
            names: cat.names.clone(),
            tags: cat.tags.clone(),
            tagsets: cat.tagsets.clone(),
            ids: cat.ids.clone(),
        }
    }

    /// Adds a backup. Row ids outside what an inode number can carry are left out.
    pub fn push(&mut self, id: i64, date: Epoch, name: &str, tags: &str, enc: bool) {
        if !(0..((ENTRY_BASE - BACKUP_BASE) / PLACES) as i64).contains(&id) {
            tracing::warn!("inventory row {id} has an id the mount cannot number; it is not shown");
            return;
        }
        let name = intern(&mut self.ids.names, &mut self.names, name);
        let tags = match self.ids.tagsets.get(tags) {
            Some(&t) => t,
            None => {
                let mut set: Vec<u32> = Vec::new();
                for tag in tags.split_whitespace() {
                    let id = intern(&mut self.ids.tags, &mut self.tags, tag);
                    if !set.contains(&id) {
                        set.push(id);
                    }
                }
                let t = self.tagsets.len() as u32;
                self.tagsets.push(set.into_boxed_slice());
                self.ids.tagsets.insert(tags.to_string(), t);
                t
            }
        };
        self.rows.push(Row { id, date, name, tags, enc });
    }
}

/// Which virtual directories a rebuild changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Changes {
    /// Directories whose listing changed (and `latest` links whose target may have).
    pub inodes: Vec<Ino>,
    /// Names that a directory no longer holds: (directory, name).
    pub removed: Vec<(Ino, Vec<u8>)>,
}

/// The rows and the virtual directories laid out from them.
#[derive(Debug, Clone)]
pub(super) struct Catalog {
    /// Sorted by id.
    rows: Vec<Row>,
    names: Vec<Box<[u8]>>,
    name_ids: HashMap<Box<[u8]>, u32>,
    /// Rank of each name in byte order (the order of `/by-date` days).
    name_rank: Vec<u32>,
    /// Escaped tags, by tag id.
    tags: Vec<Box<[u8]>>,
    tagsets: Vec<Box<[u32]>>,
    ids: Interned,
    /// `dirs[ino - 1]`.
    dirs: Vec<VDir>,
    /// Path (components joined by `/`) to inode, for every virtual directory there ever was.
    paths: HashMap<Box<[u8]>, Ino>,
    name_dir: Vec<Ino>,
    day_dir: HashMap<i64, Ino>,
    tag_dir: HashMap<(u32, u32), Ino>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::build(Builder::default(), None).0
    }
}

fn sig_of(list: &List, cat: &Catalog) -> u64 {
    let mut h = DefaultHasher::new();
    match list {
        List::Dirs(v) => v.hash(&mut h),
        List::Backups { rows, latest, .. } => {
            latest.hash(&mut h);
            for &r in rows {
                let row = &cat.rows[r as usize];
                (row.id, row.date).hash(&mut h);
            }
        }
        List::Day { rows, .. } => {
            for &r in rows {
                let row = &cat.rows[r as usize];
                (row.id, row.date, &cat.names[row.name as usize]).hash(&mut h);
            }
        }
        List::Incoming => 1.hash(&mut h),
        List::Gone => 2.hash(&mut h),
        // What it lists follows the name's backups.
        List::Versions { of } => cat.dirs[*of as usize - 1].sig.hash(&mut h),
    }
    h.finish()
}

/// The number of backups before `rows[i]` in its run of equal keys (0 for the first): `~2`, `~3`… tell them apart.
fn run_index(rows: &[u32], i: usize, same: impl Fn(u32, u32) -> bool) -> usize {
    let mut k = 0;
    while k < i && same(rows[i - k - 1], rows[i]) {
        k += 1;
    }
    k
}

fn with_run(mut name: Vec<u8>, k: usize) -> Vec<u8> {
    if k > 0 {
        name = names::disambiguate(&name, k + 1);
    }
    name
}

/// Splits `base~k` into `(base, k - 1)`, or `(name, 0)`.
fn split_run(name: &[u8]) -> (&[u8], usize) {
    if let Some(p) = name.iter().rposition(|&b| b == b'~') {
        if let Some(k) = std::str::from_utf8(&name[p + 1..]).ok().and_then(|s| s.parse::<usize>().ok()) {
            if k >= 2 && name[p + 1] != b'0' {
                return (&name[..p], k - 1);
            }
        }
    }
    (name, 0)
}

impl Catalog {
    /// Lays the virtual tree out from `rows`, keeping the inode numbers `prev` gave the same paths; with `prev`,
    /// also says what changed.
    pub fn build(b: Builder, prev: Option<&Catalog>) -> (Catalog, Changes) {
        let Builder { mut rows, names, tags, tagsets, ids } = b;
        rows.sort_unstable_by_key(|r| r.id);
        rows.dedup_by_key(|r| r.id);
        let mut order: Vec<u32> = (0..names.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
        let mut name_rank = vec![0u32; names.len()];
        for (rank, &n) in order.iter().enumerate() {
            name_rank[n as usize] = rank as u32;
        }
        let name_ids = names.iter().enumerate().map(|(i, n)| (n.clone(), i as u32)).collect();
        let mut cat = Catalog {
            rows,
            names,
            name_ids,
            name_rank,
            tags,
            tagsets,
            ids,
            dirs: Vec::new(),
            paths: HashMap::new(),
            name_dir: Vec::new(),
            day_dir: HashMap::new(),
            tag_dir: HashMap::new(),
        };
        if let Some(p) = prev {
            cat.paths = p.paths.clone();
            cat.dirs = p.dirs.iter().map(|d| VDir { parent: d.parent, list: List::Gone, sig: 0 }).collect();
        }
        cat.lay_out();
        for i in 0..cat.dirs.len() {
            let sig = sig_of(&cat.dirs[i].list, &cat);
            cat.dirs[i].sig = sig;
        }
        let changes = prev.map(|p| cat.changes_since(p)).unwrap_or_default();
        (cat, changes)
    }

    /// The directory at `path` (created, or its number reused), with `parent` and what it lists.
    fn dir(&mut self, path: &[u8], parent: Ino, list: List) -> Ino {
        let ino = match self.paths.get(path) {
            Some(&i) => i,
            None => {
                self.dirs.push(VDir { parent, list: List::Gone, sig: 0 });
                let i = self.dirs.len() as Ino;
                self.paths.insert(path.into(), i);
                i
            }
        };
        let d = &mut self.dirs[ino as usize - 1];
        d.parent = parent;
        d.list = list;
        ino
    }

    fn lay_out(&mut self) {
        let key = |parts: &[&[u8]]| parts.join(&b'/');
        // Root first, so that it is inode 1.
        self.dir(b"", ROOT, List::Dirs(Vec::new()));
        let by_name = self.dir(b"by-name", ROOT, List::Dirs(Vec::new()));
        let by_tag = self.dir(b"by-tag", ROOT, List::Dirs(Vec::new()));
        let by_date = self.dir(b"by-date", ROOT, List::Dirs(Vec::new()));
        let incoming = self.dir(b"incoming", ROOT, List::Incoming);
        let versions = self.dir(b"versions", ROOT, List::Dirs(Vec::new()));
        self.dirs[ROOT as usize - 1].list = List::Dirs(vec![
            (b"by-date"[..].into(), by_date),
            (b"by-name"[..].into(), by_name),
            (b"by-tag"[..].into(), by_tag),
            (b"incoming"[..].into(), incoming),
            (b"versions"[..].into(), versions),
        ]);

        // First what each directory lists (rows by name, by tag and name, by day), then the directories.
        let rows = std::mem::take(&mut self.rows);
        let names = std::mem::take(&mut self.names);
        let tags = std::mem::take(&mut self.tags);
        let tagsets = std::mem::take(&mut self.tagsets);
        let rank = std::mem::take(&mut self.name_rank);
        let mut of_name: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
        let mut of_tag: ByTag = BTreeMap::new();
        let mut of_day: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            of_name[r.name as usize].push(i as u32);
            for &t in tagsets[r.tags as usize].iter().take((PLACES - u64::from(PLACE_TAG)) as usize) {
                let k = (&*tags[t as usize], t, &*names[r.name as usize], r.name);
                of_tag.entry(k).or_default().push(i as u32);
            }
            of_day.entry(r.date.div_euclid(DAY)).or_default().push(i as u32);
        }
        let by_time = |v: &mut Vec<u32>| v.sort_unstable_by_key(|&i| (rows[i as usize].date, rows[i as usize].id));

        let mut name_order: Vec<u32> = (0..names.len() as u32).filter(|&n| !of_name[n as usize].is_empty()).collect();
        name_order.sort_unstable_by_key(|&n| rank[n as usize]);
        self.name_dir = vec![0; names.len()];
        let mut listed = Vec::with_capacity(name_order.len());
        for &n in &name_order {
            let mut v = std::mem::take(&mut of_name[n as usize]);
            by_time(&mut v);
            let name = &names[n as usize];
            let list = List::Backups { place: Placing::Name, rows: v, latest: true };
            let d = self.dir(&key(&[b"by-name", name]), by_name, list);
            self.name_dir[n as usize] = d;
            listed.push((name.clone(), d));
        }
        let of_versions = listed
            .iter()
            .map(|(name, d)| (name.clone(), self.dir(&key(&[b"versions", name]), versions, List::Versions { of: *d })));
        let of_versions = of_versions.collect();
        self.dirs[versions as usize - 1].list = List::Dirs(of_versions);
        self.dirs[by_name as usize - 1].list = List::Dirs(listed);

        // /by-tag/<tag>/<name>: the map is ordered by tag, then name.
        let mut tags_listed: Named = Vec::new();
        for ((tag_name, t, name, n), mut v) in of_tag {
            if tags_listed.last().is_none_or(|(last, _)| **last != *tag_name) {
                let d = self.dir(&key(&[b"by-tag", tag_name]), by_tag, List::Dirs(Vec::new()));
                tags_listed.push((tag_name.into(), d));
            }
            let tag_dir = tags_listed.last().expect("pushed above").1;
            by_time(&mut v);
            let list = List::Backups { place: Placing::Tag(t), rows: v, latest: false };
            let d = self.dir(&key(&[b"by-tag", tag_name, name]), tag_dir, list);
            self.tag_dir.insert((t, n), d);
            if let List::Dirs(names_in) = &mut self.dirs[tag_dir as usize - 1].list {
                names_in.push((name.into(), d));
            }
        }
        self.dirs[by_tag as usize - 1].list = List::Dirs(tags_listed);

        // /by-date/YYYY/MM/DD: a day lists by name, then time.
        let mut years: Calendar = BTreeMap::new();
        for (day, mut v) in of_day {
            v.sort_unstable_by_key(|&i| {
                let r = &rows[i as usize];
                (rank[r.name as usize], r.date, r.id)
            });
            let [y, m, d] = names::date_parts(day * DAY);
            let ino = self.dir(&key(&[b"by-date", &y, &m, &d]), ROOT, List::Day { start: day * DAY, rows: v });
            self.day_dir.insert(day, ino);
            years.entry(y).or_default().entry(m).or_default().push((d.into(), ino));
        }
        let mut year_list = Vec::new();
        for (y, months) in years {
            let yd = self.dir(&key(&[b"by-date", &y]), by_date, List::Dirs(Vec::new()));
            let mut month_list = Vec::new();
            for (m, days) in months {
                let md = self.dir(&key(&[b"by-date", &y, &m]), yd, List::Dirs(Vec::new()));
                for (_, d) in &days {
                    self.dirs[*d as usize - 1].parent = md;
                }
                self.dirs[md as usize - 1].list = List::Dirs(days);
                month_list.push((m.into(), md));
            }
            self.dirs[yd as usize - 1].list = List::Dirs(month_list);
            year_list.push((y.into(), yd));
        }
        self.dirs[by_date as usize - 1].list = List::Dirs(year_list);
        self.rows = rows;
        self.names = names;
        self.tags = tags;
        self.tagsets = tagsets;
        self.name_rank = rank;
    }

    fn changes_since(&self, prev: &Catalog) -> Changes {
        let mut c = Changes::default();
        for (i, old) in prev.dirs.iter().enumerate() {
            let new = &self.dirs[i];
            if old.sig == new.sig && old.list == new.list {
                continue;
            }
            let ino = i as Ino + 1;
            c.inodes.push(ino);
            if matches!(old.list, List::Backups { latest: true, .. }) {
                c.inodes.push(LATEST_BASE + ino);
            }
            let now: HashSet<Vec<u8>> =
                (0..self.len(new)).filter_map(|k| self.entry(ino, new, k)).map(|e| e.0).collect();
            for k in 0..prev.len(old) {
                if let Some((name, _, _)) = prev.entry(ino, old, k) {
                    if !now.contains(&name) {
                        c.removed.push((ino, name));
                    }
                }
            }
        }
        c
    }

    fn vdir(&self, ino: Ino) -> Option<&VDir> {
        if ino >= DIRS_END {
            return None;
        }
        ino.checked_sub(1).and_then(|i| self.dirs.get(i as usize)).filter(|d| d.list != List::Gone)
    }

    /// The row with this id.
    pub fn row(&self, id: i64) -> Option<&Row> {
        self.rows.binary_search_by_key(&id, |r| r.id).ok().map(|i| &self.rows[i])
    }

    /// Every row, by id.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// What a virtual inode is, if it is one that exists.
    pub fn kind(&self, ino: Ino) -> Option<Virtual> {
        if let Some(d) = self.vdir(ino) {
            return Some(match d.list {
                List::Incoming => Virtual::Incoming,
                List::Versions { .. } => Virtual::Versions,
                _ => Virtual::Dir,
            });
        }
        if (LATEST_BASE..LATEST_BASE + DIRS_END).contains(&ino) {
            let d = self.vdir(ino - LATEST_BASE)?;
            return matches!(&d.list, List::Backups { latest: true, rows, .. } if !rows.is_empty())
                .then_some(Virtual::Latest);
        }
        self.placement(ino).map(|(row, _)| Virtual::Backup(*row))
    }

    /// The row of a backup directory's inode and the directory holding it.
    pub fn placement(&self, ino: Ino) -> Option<(&Row, Ino)> {
        if !(BACKUP_BASE..ENTRY_BASE).contains(&ino) {
            return None;
        }
        let v = ino - BACKUP_BASE;
        let (id, place) = ((v / PLACES) as i64, (v % PLACES) as u8);
        let row = self.row(id)?;
        let parent = match place {
            PLACE_NAME => *self.name_dir.get(row.name as usize)?,
            PLACE_DATE => *self.day_dir.get(&row.date.div_euclid(DAY))?,
            p => {
                let tag = *self.tagsets[row.tags as usize].get(usize::from(p - PLACE_TAG))?;
                *self.tag_dir.get(&(tag, row.name))?
            }
        };
        Some((row, parent))
    }

    /// The parent of a virtual directory or `latest` link.
    pub fn parent(&self, ino: Ino) -> Option<Ino> {
        if let Some(d) = self.vdir(ino) {
            return Some(if ino == ROOT { ROOT } else { d.parent });
        }
        if (LATEST_BASE..LATEST_BASE + DIRS_END).contains(&ino) {
            return Some(ino - LATEST_BASE);
        }
        self.placement(ino).map(|(_, p)| p)
    }

    /// The target of a `latest` link (the newest backup's directory name) and that backup's date.
    pub fn latest(&self, ino: Ino) -> Option<(Vec<u8>, Epoch)> {
        let dir = self.vdir(ino.checked_sub(LATEST_BASE)?)?;
        let List::Backups { rows, latest: true, .. } = &dir.list else { return None };
        let (name, _, _) = self.entry(ino - LATEST_BASE, dir, rows.len().checked_sub(1)?)?;
        Some((name, self.rows[*rows.last()? as usize].date))
    }

    fn len(&self, d: &VDir) -> usize {
        match &d.list {
            List::Dirs(v) => v.len(),
            List::Backups { rows, latest, .. } => rows.len() + usize::from(*latest && !rows.is_empty()),
            List::Day { rows, .. } => rows.len(),
            List::Incoming | List::Gone | List::Versions { .. } => 0,
        }
    }

    fn placement_ino(&self, row: &Row, placing: Placing) -> Ino {
        let place = match placing {
            Placing::Name => PLACE_NAME,
            Placing::Tag(t) => {
                let pos = self.tagsets[row.tags as usize].iter().position(|&x| x == t).unwrap_or(0);
                PLACE_TAG + pos as u8
            }
        };
        BACKUP_BASE + row.id as u64 * PLACES + u64::from(place)
    }

    /// The `k`-th entry of a directory: name, inode, type.
    fn entry(&self, ino: Ino, d: &VDir, k: usize) -> Option<(Vec<u8>, Ino, Kind)> {
        match &d.list {
            List::Dirs(v) => v.get(k).map(|(n, i)| (n.to_vec(), *i, Kind::Dir)),
            List::Backups { place, rows, latest } => {
                if k == rows.len() && *latest && !rows.is_empty() {
                    return Some((b"latest".to_vec(), LATEST_BASE + ino, Kind::Symlink));
                }
                let row = &self.rows[*rows.get(k)? as usize];
                let run = run_index(rows, k, |a, b| self.rows[a as usize].date == self.rows[b as usize].date);
                Some((with_run(names::timestamp(row.date), run), self.placement_ino(row, *place), Kind::Dir))
            }
            List::Day { rows, .. } => {
                let row = &self.rows[*rows.get(k)? as usize];
                let same = |a: u32, b: u32| {
                    let (a, b) = (&self.rows[a as usize], &self.rows[b as usize]);
                    a.name == b.name && a.date == b.date
                };
                let name = names::date_entry(&self.names[row.name as usize], row.date);
                let ino = BACKUP_BASE + row.id as u64 * PLACES + u64::from(PLACE_DATE);
                Some((with_run(name, run_index(rows, k, same)), ino, Kind::Dir))
            }
            List::Incoming | List::Gone | List::Versions { .. } => None,
        }
    }

    /// The backups of a `/versions/<name>` directory, oldest first.
    pub fn versions_rows(&self, ino: Ino) -> Option<Vec<Row>> {
        let List::Versions { of } = self.vdir(ino)?.list else { return None };
        let List::Backups { rows, .. } = &self.vdir(of)?.list else { return None };
        Some(rows.iter().map(|&r| self.rows[r as usize]).collect())
    }

    /// Up to `max` entries of directory `ino` after the first `skip`, and the directory's parent.
    pub fn listing(&self, ino: Ino, skip: usize, max: usize) -> Option<(Ino, Vec<Listed>)> {
        let d = self.vdir(ino).filter(|d| !matches!(d.list, List::Versions { .. }))?;
        let end = self.len(d).min(skip.saturating_add(max));
        Some((self.parent(ino)?, (skip..end).filter_map(|k| self.entry(ino, d, k)).collect()))
    }

    /// The child `name` of virtual directory `ino`: `Some(None)` when the directory exists but has no such child.
    pub fn child(&self, ino: Ino, name: &[u8]) -> Option<Option<Ino>> {
        let d = self.vdir(ino).filter(|d| !matches!(d.list, List::Versions { .. }))?;
        let found = match &d.list {
            List::Dirs(v) => v.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| v[i].1),
            List::Backups { rows, latest, .. } if name == b"latest" => {
                (*latest && !rows.is_empty()).then_some(LATEST_BASE + ino)
            }
            List::Backups { rows, .. } => {
                let (base, k) = split_run(name);
                let date = names::parse_timestamp(base);
                let start = date.map(|date| rows.partition_point(|&r| self.rows[r as usize].date < date));
                start.map(|s| s + k).and_then(|i| self.entry(ino, d, i)).filter(|e| e.0 == name).map(|e| e.1)
            }
            List::Day { start, rows } => {
                let (base, k) = split_run(name);
                let at = base.iter().rposition(|&b| b == b'@');
                let key = at.and_then(|at| {
                    let n = *self.name_ids.get(&base[..at])?;
                    let secs = names::parse_hhmmss(&base[at + 1..])?;
                    Some((self.name_rank[n as usize], start + secs))
                });
                let first = key.map(|key| {
                    rows.partition_point(|&r| {
                        let r = &self.rows[r as usize];
                        (self.name_rank[r.name as usize], r.date) < key
                    })
                });
                first.map(|s| s + k).and_then(|i| self.entry(ino, d, i)).filter(|e| e.0 == name).map(|e| e.1)
            }
            List::Incoming | List::Gone | List::Versions { .. } => None,
        };
        Some(found)
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
