//! Hooks: shell commands a profile runs on events, for people who use the command line rather than the library.
//!
//! The profile's `hooks:` mapping names events (`before_backup`, `on_rotate_backups`, …) and lists commands for each
//! (a string or a list of strings), plus two settings: `timeout` (seconds per command, default 300) and
//! `before_fail_aborts` (default true). Each command runs as `sh -c COMMAND` in its own process group, with the
//! event as JSON on stdin ([`Event::to_json`]) and `BAKTHAT_*` environment variables; its output goes to stderr.
//! A failing `before_*` command stops the action (unless `before_fail_aborts: false`); a failing `on_*` command is
//! logged. A command still running at the timeout is killed with its process group.
//!
//! This module runs commands; it does not decide when (see [`super::Client`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_norway::Value;

use super::events::{Event, EventKind};
use super::ClientError;
use crate::ops;

/// The timeout of a hook command when `hooks.timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The parsed `hooks:` key of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct HookSettings {
    /// Commands by event, in the order they run.
    pub commands: BTreeMap<EventKind, Vec<String>>,
    /// How long one command may run before it is killed.
    pub timeout: Duration,
    /// Whether a failing `before_*` command stops the action.
    pub before_fail_aborts: bool,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings { commands: BTreeMap::new(), timeout: DEFAULT_TIMEOUT, before_fail_aborts: true }
    }
}

/// How a hook command ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookExit {
    /// It exited with this non-zero status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past the timeout and was killed with its process group.
    TimedOut(Duration),
    /// `sh` could not be started.
    Spawn(String),
    /// bakthat was interrupted (Ctrl-C, SIGTERM) while the command ran; it was killed with its process group.
    Interrupted,
}

impl fmt::Display for HookExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookExit::Code(c) => write!(f, "exit status {c}"),
            HookExit::Signal(s) => write!(f, "killed by signal {s}"),
            HookExit::TimedOut(t) => write!(f, "still running after the {}s timeout, killed", t.as_secs_f64()),
            HookExit::Spawn(e) => write!(f, "could not start sh: {e}"),
            HookExit::Interrupted => write!(f, "interrupted, killed"),
        }
    }
}

impl HookSettings {
    /// Parses a profile's `hooks:` value (`None`: no hooks). Unknown keys are errors, so a misspelt event name
    /// does not silently do nothing.
    pub fn parse(profile: &str, value: Option<&Value>) -> Result<HookSettings, ClientError> {
        let mut s = HookSettings::default();
        let bad = |key: &str, message: String| ClientError::HookConfig {
            profile: profile.to_string(),
            key: if key.is_empty() { "hooks".into() } else { format!("hooks.{key}") },
            message,
        };
        let map = match value {
            None | Some(Value::Null) => return Ok(s),
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(bad("", "expected a mapping of event names to commands".into())),
        };
        for (k, v) in map {
            let key = k.as_str().ok_or_else(|| bad("", "keys must be text".into()))?;
            match key {
                "timeout" => {
                    let secs = v.as_f64().filter(|t| *t > 0.0 && *t <= 1e9);
                    let secs = secs.ok_or_else(|| bad(key, "expected a number of seconds above 0".into()))?;
                    s.timeout = Duration::from_secs_f64(secs);
                }
                "before_fail_aborts" => {
                    // Also YAML 1.1's yes/no/on/off, as the rest of the config file reads them.
                    let flag = match v {
                        Value::Bool(b) => Some(*b),
                        _ => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                            Some("true" | "yes" | "on") => Some(true),
                            Some("false" | "no" | "off") => Some(false),
                            _ => None,
                        },
                    };
                    s.before_fail_aborts = flag.ok_or_else(|| bad(key, "expected true or false".into()))?;
                }
                _ => {
                    let kind = EventKind::parse(key).ok_or_else(|| {
                        let names: Vec<String> = EventKind::all().map(|k| k.name()).collect();
                        bad(key, format!("unknown key; use {}, timeout or before_fail_aborts", names.join(", ")))
                    })?;
                    let cmds = match v {
                        Value::Null => Vec::new(),
                        Value::String(c) => vec![c.clone()],
                        Value::Sequence(items) => items
                            .iter()
                            .map(|i| i.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| bad(key, "expected a command or a list of commands (text)".into()))?,
                        _ => return Err(bad(key, "expected a command or a list of commands".into())),
                    };
                    s.commands.insert(kind, cmds);
                }
            }
        }
        Ok(s)
    }

    /// Runs the commands of `event.kind` in order. Returns the first failure of a `before_*` command when
    /// failures abort; every other failure is logged with `tracing::warn` and the next command runs.
    pub fn run(&self, event: &Event<'_>, cancel: &ops::Cancel) -> Result<(), ClientError> {
        let Some(cmds) = self.commands.get(&event.kind) else { return Ok(()) };
        if cmds.is_empty() {
            return Ok(());
        }
        let stdin = serde_json::to_vec(&event.to_json()).unwrap_or_default();
        let env = environment(event);
        for cmd in cmds {
            tracing::info!(event = %event.kind, command = %cmd, "running hook");
            if let Err(exit) = run_one(cmd, &stdin, &env, self.timeout, cancel) {
                if event.kind.before && self.before_fail_aborts {
                    return Err(ClientError::HookFailed { event: event.kind.name(), command: cmd.clone(), exit });
                }
                tracing::warn!("the {} hook `{cmd}` failed ({exit}); continuing", event.kind);
            }
        }
        Ok(())
    }
}

/// The `BAKTHAT_*` variables of an event (see the README for the list).
fn environment(event: &Event<'_>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("BAKTHAT_EVENT", event.kind.name()),
        ("BAKTHAT_ACTION", event.kind.action.as_str().to_string()),
        ("BAKTHAT_SESSION_ID", event.session_id.to_string()),
        ("BAKTHAT_PROFILE", event.profile.to_string()),
        ("BAKTHAT_NAME", event.name.to_string()),
        ("BAKTHAT_DRY_RUN", if event.dry_run { "1" } else { "0" }.to_string()),
    ];
    if let Some(s) = event.source {
        env.push(("BAKTHAT_SOURCE", s.display().to_string()));
    }
    if let Some(d) = event.destination {
        env.push(("BAKTHAT_DESTINATION", d.to_string()));
    }
    match &event.result {
        None => {}
        Some(Ok(_)) => {
            let records = event.records();
            let names: Vec<String> = records.iter().map(|r| r.stored_filename.to_string()).collect();
            env.push(("BAKTHAT_STATUS", "ok".into()));
            env.push(("BAKTHAT_STORED_FILENAME", names.join("\n")));
            env.push(("BAKTHAT_SIZE", records.iter().map(|r| r.size).sum::<u64>().to_string()));
            env.push(("BAKTHAT_COUNT", records.len().to_string()));
        }
        Some(Err(e)) => {
            env.push(("BAKTHAT_STATUS", "error".into()));
            env.push(("BAKTHAT_ERROR", e.to_string()));
        }
    }
    env
}

/// Runs `sh -c cmd` in a new process group, feeding `stdin`; kills the group at the timeout.
fn run_one(
    cmd: &str,
    stdin: &[u8],
    env: &[(&'static str, String)],
    timeout: Duration,
    cancel: &ops::Cancel,
) -> Result<(), HookExit> {
    let mut command = Command::new("sh");
    command.arg("-c").arg(cmd).stdin(Stdio::piped()).process_group(0);
    // The hook's output goes to stderr, so that it never mixes with bakthat's own output on stdout.
    if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
        command.stdout(Stdio::from(fd));
    }
    // The password stays with bakthat: a hook that logs its environment must not leak it.
    command.env_remove("BAKTHAT_PASSWORD");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().map_err(|e| HookExit::Spawn(e.to_string()))?;
    let pid = child.id() as libc::pid_t;
    if let Some(mut pipe) = child.stdin.take() {
        let data = stdin.to_vec();
        // A hook that does not read its stdin must not block us: write from another thread, ignore EPIPE.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    // The hook runs in its own process group, so Ctrl-C does not reach it: watch the action's cancel token meanwhile.
    let deadline = Instant::now() + timeout;
    let status = loop {
        let now = Instant::now();
        let stop = if cancel.is_cancelled() {
            Some(HookExit::Interrupted)
        } else if now >= deadline {
            Some(HookExit::TimedOut(timeout))
        } else {
            None
        };
        if let Some(why) = stop {
            // The child is not reaped until the waiter thread returns, so the group id is still ours to kill.
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
            let _ = rx.recv();
            return Err(why);
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
            Ok(status) => break status,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(std::io::Error::other("the waiter thread died")),
        }
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => Err(HookExit::Code(c)),
            (None, Some(sig)) => Err(HookExit::Signal(sig)),
            (None, None) => Err(HookExit::Code(-1)),
        },
        Err(e) => Err(HookExit::Spawn(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::events::Action;

    fn parse(yaml: &str) -> Result<HookSettings, ClientError> {
        let v: Value = serde_norway::from_str(yaml).unwrap();
        HookSettings::parse("default", Some(&v))
    }

    #[test]
    fn parses_strings_lists_and_settings() {
        let s =
            parse("{before_backup: 'echo a', on_backup: ['echo b', 'echo c'], timeout: 1.5, before_fail_aborts: no}")
                .unwrap();
        assert_eq!(s.commands[&Action::Backup.before()], vec!["echo a"]);
        assert_eq!(s.commands[&Action::Backup.on()], vec!["echo b", "echo c"]);
        assert_eq!(s.timeout, Duration::from_millis(1500));
        assert!(!s.before_fail_aborts);
        assert_eq!(HookSettings::parse("p", None).unwrap(), HookSettings::default());
    }

    #[test]
    fn rejects_misspelt_events_and_bad_values() {
        let e = parse("{on_bakup: 'x'}").unwrap_err().to_string();
        assert!(e.contains("hooks.on_bakup") && e.contains("on_backup"), "{e}");
        assert!(parse("{timeout: 0}").is_err());
        assert!(parse("{timeout: soon}").is_err());
        assert!(parse("{timeout: 1e300}").is_err(), "no panic on absurd timeouts");
        assert!(parse("{on_backup: [1, 2]}").is_err());
        assert!(parse("[a]").is_err());
    }

    #[test]
    fn reports_exit_status_and_signals() {
        let t = Duration::from_secs(30);
        let c = &ops::Cancel::new();
        assert_eq!(run_one("exit 3", b"", &[], t, c), Err(HookExit::Code(3)));
        assert_eq!(run_one("kill -TERM $$", b"", &[], t, c), Err(HookExit::Signal(libc::SIGTERM)));
        assert_eq!(run_one("true", b"", &[], t, c), Ok(()));
        // A hook that ignores its stdin still finishes, even with more input than a pipe holds.
        assert_eq!(run_one("exit 0", &vec![b'x'; 1 << 20], &[], t, c), Ok(()));
    }

    /// Issue 14: the hook of a cancelled action is killed; another action's token does not touch it.
    #[test]
    fn a_cancelled_action_kills_only_its_own_hook() {
        let t = Duration::from_secs(300);
        let cancelled = ops::Cancel::new();
        cancelled.cancel();
        assert_eq!(run_one("sleep 300", b"", &[], t, &cancelled), Err(HookExit::Interrupted));
        assert_eq!(run_one("true", b"", &[], t, &ops::Cancel::new()), Ok(()));
    }
}
