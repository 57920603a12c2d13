//! The library client on a real store, driven through a helper scope over two days: the body the S3 and Swift
//! client tests share.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bakthat::archive::Secret;
use bakthat::client::Client;
use bakthat::config::Config;
use bakthat::storage::Backend;

/// 2013-01-01 (UTC+1), the first day's clock.
pub const START: i64 = 1_357_009_200;
/// One day in seconds.
pub const DAY: i64 = 86_400;

/// An event the client emitted: its name, session id and destination.
#[derive(Debug, Clone)]
pub struct Seen {
    pub name: String,
    pub session: uuid::Uuid,
    pub destination: Option<String>,
}

/// A client on the `default` profile of a config, with a clock the test sets and every event it emits recorded.
pub struct Fixture {
    pub client: Client,
    pub clock: Arc<AtomicI64>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fixture {
    /// A client from the YAML `config`, its inventory in `dir`, the clock at [`START`].
    pub fn new(dir: &Path, config: &str) -> Fixture {
        let config = Config::from_yaml(&dir.join("bakthat.yml"), config).unwrap();
        let mut client = Client::from_config(config, "default", &dir.join("inv.sqlite")).unwrap();
        let clock = Arc::new(AtomicI64::new(START));
        let c2 = clock.clone();
        client.ctx_mut().clock = Arc::new(move || c2.load(Ordering::SeqCst));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        client.events().on_any(move |ev| {
            s.lock().unwrap().push(Seen {
                name: ev.kind.name(),
                session: ev.session_id,
                destination: ev.destination.map(String::from),
            })
        });
        Fixture { client, clock, seen }
    }

    /// One helper backup of `helper` (its `all.sql` says `day N`) on each of two days; each must land in `backend`.
    /// Returns their stored names, oldest first.
    pub fn two_daily_backups(&self, helper: &str, password: &Arc<Secret>, backend: &str) -> Vec<String> {
        let mut stored = Vec::new();
        for day in 0..2 {
            self.clock.store(START + day * DAY, Ordering::SeqCst);
            let scope = self.client.helper(helper).unwrap().password(password.clone());
            fs::write(scope.path().join("all.sql"), format!("day {day}")).unwrap();
            let out = scope.backup().unwrap();
            assert_eq!(out.record.backend.as_str(), backend);
            stored.push(out.record.stored_filename.to_string());
        }
        stored
    }

    /// After [`Fixture::two_daily_backups`] with `rotation: {days: 1}`: the restore (into `dir`/restored) gives the
    /// latest day; rotation deletes the older archive from `store`, and delete the other one.
    pub fn restore_rotate_delete(
        &self,
        dir: &Path,
        helper: &str,
        password: Arc<Secret>,
        store: &dyn Backend,
        stored: &[String],
    ) {
        let scope = self.client.helper(helper).unwrap().password(password);
        let to = dir.join("restored");
        scope.restore(&to).unwrap();
        assert_eq!(fs::read_to_string(to.join(helper).join("all.sql")).unwrap(), "day 1");
        let plan = scope.rotate().unwrap();
        assert_eq!(plan.iter().filter(|p| !p.keep).count(), 1);
        assert!(store.head(&stored[0]).unwrap().is_none(), "rotation deleted the older archive from {}", store.kind());
        self.client.delete(helper, None, None).unwrap();
        assert!(store.head(&stored[1]).unwrap().is_none());
    }
}
