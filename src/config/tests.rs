//! Tests of the config file: 0.6 files load, saves keep what they do not know, errors name the key.

use super::emit::emit_document;
use super::*;

use proptest::prelude::*;

/// A config as bakthat 0.6 users have them: written by `configure`, then edited by hand.
const CONFIG_06: &str = r#"default:
  access_key: AKIDEXAMPLE
  secret_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
  region_name: us-east-1
  s3_bucket: mybucket
  glacier_vault: myvault
  default_destination: s3
  compress: true
  plugins:
  - test_plugin.TestPlugin
  - other.Plugin
  plugins_dir: /home/user/.bakthat_plugins
  bakmanager_token: tok123
  bakmanager_api: https://bakmanager.example/api/backups/
  rotation:
    days: 7
    weeks: 4
    months: 12
    first_week_day: 5
    keep_forever: [a, 1]
  my_own_setting:
    nested: {a: 1, b: [yes, '1:30', 2024-01-01]}
    when: 2024-01-01
swift:
  access_key: 'account:user'
  secret_key: swiftsecret
  region_name: RegionOne
  s3_bucket: container
  glacier_vault: ''
  default_destination: swift
  auth_url: https://keystone.example/v2.0
  auth_version: 2
  compress: no
  rotation:
    days: '7'
    weeks: "4"
    months: 3
    years: ' 1 '
    hours: 0
    first_week_day: saturday
  url: https://sync.override.example
  username: bob
  password: hunter2
legacy:
  auth_url: https://swift.example/auth/v1.0
  auth_version: '1'
  endpoint_url: http://127.0.0.1:9000
  local_path: ~/backups
  s3_storage_class: STANDARD_IA
  swift_insecure: true
  webhook_url: https://hooks.example/x
  sync_auto: off
  hooks:
    before_backup: [echo hi]
  kdf: {algorithm: argon2id, m_cost: 65536}
sync:
  url: https://sync.example/api
  username: alice
  password: s3cret
  auto: true
  server_flavour: 2
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write test file");
    path
}

fn raw(path: &Path) -> Value {
    serde_norway::from_str(&fs::read_to_string(path).expect("read")).expect("valid yaml")
}

#[test]
fn loads_a_realistic_06_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&write(dir.path(), "c.yml", CONFIG_06)).unwrap();
    assert_eq!(config.profiles.keys().collect::<Vec<_>>(), ["default", "legacy", "swift"]);

    let d = config.profile("default").unwrap();
    assert_eq!(d.access_key.as_deref(), Some("AKIDEXAMPLE"));
    assert_eq!(d.secret_key.as_deref(), Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
    assert_eq!(d.region_name.as_deref(), Some("us-east-1"));
    assert_eq!(d.s3_bucket.as_deref(), Some("mybucket"));
    assert_eq!(d.glacier_vault.as_deref(), Some("myvault"));
    assert_eq!(d.destination().as_str(), "s3");
    assert!(d.compress());
    assert_eq!(d.plugins, ["test_plugin.TestPlugin", "other.Plugin"]);
    assert_eq!(d.plugins_dir.as_deref(), Some("/home/user/.bakthat_plugins"));
    assert_eq!(d.bakmanager_token.as_deref(), Some("tok123"));
    assert_eq!(d.bakmanager_api.as_deref(), Some("https://bakmanager.example/api/backups/"));
    let r = d.rotation.as_ref().unwrap();
    assert_eq!((r.days, r.weeks, r.months, r.years, r.first_week_day), (Some(7), Some(4), Some(12), None, Some(5)));
    assert!(r.extra.contains_key("keep_forever"));
    assert!(d.extra.contains_key("my_own_setting"));

    let s = config.profile("swift").unwrap();
    assert_eq!(s.access_key.as_deref(), Some("account:user"));
    assert_eq!(s.glacier_vault.as_deref(), Some(""));
    assert_eq!(s.destination().as_str(), "swift");
    assert_eq!(s.auth_version.as_deref(), Some("2"));
    assert!(!s.compress(), "YAML 1.1 `no` is false, as 0.6 read it");
    let r = s.rotation.as_ref().unwrap();
    assert_eq!(
        (r.days, r.weeks, r.months, r.years, r.hours, r.first_week_day),
        (Some(7), Some(4), Some(3), Some(1), Some(0), Some(5))
    );
    assert_eq!((s.url.as_deref(), s.username.as_deref()), (Some("https://sync.override.example"), Some("bob")));
    assert_eq!(s.password.as_deref(), Some("hunter2"));

    let l = config.profile("legacy").unwrap();
    assert_eq!(l.auth_version.as_deref(), Some("1"));
    assert_eq!(l.destination().as_str(), "local", "the new default destination");
    assert_eq!(l.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(l.local_path.as_deref(), Some(Path::new("~/backups")));
    assert_eq!(l.s3_storage_class.as_deref(), Some("STANDARD_IA"));
    assert!(l.swift_insecure);
    assert_eq!(l.webhook_url.as_deref(), Some("https://hooks.example/x"));
    assert_eq!(l.sync_auto, Some(false));
    assert!(l.hooks.is_some() && l.kdf.is_some());
    if let Some(home) = dirs::home_dir() {
        assert_eq!(l.local_dir(), Some(home.join("backups")));
    }

    let sync = config.sync.as_ref().unwrap();
    assert_eq!(sync.url.as_deref(), Some("https://sync.example/api"));
    assert_eq!((sync.username.as_deref(), sync.password.as_deref()), (Some("alice"), Some("s3cret")));
    assert!(sync.auto);

    // 0.6 let a profile's url/username/password override the sync block.
    let merged = config.sync_for(&s);
    assert_eq!(merged.url.as_deref(), Some("https://sync.override.example"));
    assert_eq!((merged.username.as_deref(), merged.password.as_deref()), (Some("bob"), Some("hunter2")));
    assert!(merged.auto);
    assert!(!config.sync_for(&l).auto, "sync_auto: off overrides sync.auto");
    assert_eq!(config.sync_for(&d).username.as_deref(), Some("alice"));
}

#[test]
fn unknown_keys_survive_load_and_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yml", CONFIG_06);
    let before = raw(&path);
    let config = Config::load(&path).unwrap();
    config.save().unwrap();
    let after = raw(&path);

    for (profile, key) in [("default", "my_own_setting"), ("legacy", "hooks"), ("legacy", "kdf")] {
        assert_eq!(after[profile][key], before[profile][key], "{profile}.{key}");
    }
    assert_eq!(after["default"]["rotation"]["keep_forever"], before["default"]["rotation"]["keep_forever"]);
    assert_eq!(after["sync"]["server_flavour"], before["sync"]["server_flavour"]);
    // Known values keep their meaning (numeric strings become numbers; auth_version stays text).
    assert_eq!(after["swift"]["rotation"]["days"], Value::from(7));
    assert_eq!(after["legacy"]["auth_version"], Value::from("1"));
    assert_eq!(after["swift"]["auth_version"], Value::from("2"));
    // Top-level order is kept.
    let keys: Vec<_> = after.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(keys, ["default", "swift", "legacy", "sync"]);

    let again = Config::load(&path).unwrap();
    assert_eq!(again, config);
}

#[test]
fn saved_strings_stay_strings_for_yaml_1_1_readers() {
    // PyYAML (bakthat 0.6) reads unquoted yes/on/1:30/2024-01-01/0777 as booleans, numbers and dates.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::empty(&dir.path().join("c.yml"));
    let tricky = ["yes", "On", "n", "1:30", "2024-01-01", "0777", "12", "1_000", "~", "null", ".inf", "a: b", "x:"];
    for (i, s) in tricky.iter().enumerate() {
        let profile = Profile { secret_key: Some(s.to_string()), ..Profile::default() };
        config.set_profile(&format!("p{i}"), profile);
    }
    config.set_profile("yes", Profile::default());
    config.save().unwrap();
    let text = fs::read_to_string(config.path()).unwrap();
    for s in &tricky {
        assert!(
            text.contains(&format!("secret_key: '{s}'")) || text.contains(&format!("secret_key: \"{s}\"")),
            "{s} must be quoted in:\n{text}"
        );
    }
    assert!(text.contains("'yes': {}"), "{text}");
    let back = Config::load(config.path()).unwrap();
    assert_eq!(back.profiles, config.profiles);
}

#[test]
fn save_sets_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yml", "default: {access_key: a}\n");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = Config::load(&path).unwrap();
    config.set_profile("new", Profile { access_key: Some("b".into()), ..Profile::default() });
    config.save().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
    let back = Config::load(&path).unwrap();
    assert_eq!(back.profile("default").unwrap().access_key.as_deref(), Some("a"));
    assert_eq!(back.profile("new").unwrap().access_key.as_deref(), Some("b"));
    // A brand-new file gets the same mode; no temporary files are left behind.
    let fresh = dir.path().join("sub/fresh.yml");
    Config::empty(&fresh).save().unwrap();
    assert_eq!(fs::metadata(&fresh).unwrap().permissions().mode() & 0o7777, 0o600);
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn missing_file_is_an_empty_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&dir.path().join("absent.yml")).unwrap();
    assert!(config.profiles.is_empty() && config.sync.is_none());
    let p = config.profile(DEFAULT_PROFILE).unwrap();
    assert_eq!(p, Profile::default());
    assert!(p.compress());
    assert_eq!(p.destination().as_str(), "local");
    assert!(matches!(config.profile("nope"), Err(ConfigError::UnknownProfile { known, .. }) if known.is_empty()));
    // An empty file, or one with only comments, is empty too.
    let empty = Config::load(&write(dir.path(), "e.yml", "# nothing yet\n")).unwrap();
    assert!(empty.profiles.is_empty());
}

#[test]
fn unknown_profile_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&write(dir.path(), "c.yml", "work: {}\nhome:\n  s3_bucket: b\n")).unwrap();
    let err = config.profile("nope").unwrap_err();
    match &err {
        ConfigError::UnknownProfile { name, known, .. } => {
            assert_eq!(name, "nope");
            assert_eq!(known, &["home", "work"]);
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("no profile `nope`"), "{message}");
    assert!(message.contains("(profiles: home, work)"), "{message}");
    assert!(message.contains("bakthat configure -p nope"), "{message}");
    assert_eq!(config.profile("default").unwrap(), Profile::default());
}

#[test]
fn malformed_yaml_reports_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // Line 3: the second `:` (at 1-based column 15) starts a mapping inside a plain scalar.
    let path = write(dir.path(), "c.yml", "default:\n  access_key: a\n  s3_bucket: x: y\n");
    match Config::load(&path).unwrap_err() {
        ConfigError::Parse { line, column, message, .. } => {
            assert_eq!((line, column), (Some(3), Some(15)));
            assert!(message.starts_with("mapping values are not allowed"), "{message}");
            assert!(!message.contains("line 3"), "location is reported apart: {message}");
        }
        other => panic!("{other:?}"),
    }
    let shown = Config::load(&path).unwrap_err().to_string();
    assert!(shown.starts_with(&format!("{}:3:15: mapping values", path.display())), "{shown}");
    assert!(shown.ends_with("; fix the YAML or run `bakthat configure`"), "{shown}");

    // Line 2 column 3: an unclosed flow sequence is found where the next key starts.
    let path = write(dir.path(), "d.yml", "a: [1, 2\nb: 3\n");
    match Config::load(&path).unwrap_err() {
        ConfigError::Parse { line, column, .. } => assert_eq!((line, column), (Some(2), Some(2))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn structural_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("- a\n- b\n", ""),
        // The classic indentation mistake: the settings are not under the profile.
        ("default:\naccess_key: x\n", "access_key"),
        ("default: text\n", "default"),
        ("default:\n  rotation:\n    days: seven\n", "default.rotation.days"),
        ("default:\n  rotation:\n    weeks: -1\n", "default.rotation.weeks"),
        ("default:\n  rotation: 7\n", "default.rotation"),
        ("default:\n  default_destination: ftp\n", "default.default_destination"),
        ("default:\n  compress: maybe\n", "default.compress"),
        ("default:\n  plugins: one.Plugin\n", "default.plugins"),
        ("default:\n  plugins: [a.B, [c]]\n", "default.plugins[1]"),
        ("default:\n  access_key: true\n", "default.access_key"),
        ("sync: [a]\n", "sync"),
        ("sync:\n  auto: sometimes\n", "sync.auto"),
        ("default:\n  compression_level: 13\n", "default.compression_level"),
        ("default:\n  compression_level: 0\n", "default.compression_level"),
    ];
    for (text, expected) in cases {
        match Config::load(&write(dir.path(), "c.yml", text)) {
            Err(ConfigError::Invalid { key, message, .. }) => {
                assert_eq!(key, expected, "{text:?}: {message}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let err = Config::load(&write(dir.path(), "c.yml", "w:\n  rotation:\n    days: seven\n")).unwrap_err();
    assert!(err.to_string().ends_with("`w.rotation.days`: expected a whole number, got \"seven\""), "{err}");
}

#[test]
fn compression_level_is_read_and_kept() {
    let config = Config::from_yaml(Path::new("c.yml"), "default:\n  compression_level: '4'\n").unwrap();
    assert_eq!(config.profile("default").unwrap().compression_level, Some(4));
}

#[test]
fn first_week_day_accepts_names_and_numbers() {
    let cases = [
        ("Monday", Some(0)),
        ("sunday", Some(6)),
        ("SATURDAY", Some(5)),
        ("5", Some(5)),
        ("x", None),
        ("7", None),
        ("-1", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_weekday(text), expected, "{text}");
        let yaml = format!("default:\n  rotation:\n    first_week_day: '{text}'\n");
        let loaded = Config::from_yaml(Path::new("c.yml"), &yaml);
        match expected {
            Some(day) => {
                let rotation = loaded.unwrap().profile("default").unwrap().rotation.unwrap();
                assert_eq!(rotation.first_week_day, Some(day), "{text}");
            }
            None => {
                let err = loaded.unwrap_err();
                assert!(
                    matches!(&err, ConfigError::Invalid { key, .. } if key == "default.rotation.first_week_day"),
                    "{text}: {err:?}"
                );
                assert!(err.to_string().contains("weekday name"), "{err}");
            }
        }
    }
    let int = Config::from_yaml(Path::new("c.yml"), "d:\n  rotation: {first_week_day: 5}\n").unwrap();
    assert_eq!(int.profiles["d"].rotation.as_ref().unwrap().week_start(), 5);
    assert!(Config::from_yaml(Path::new("c.yml"), "d:\n  rotation: {first_week_day: 9}\n").is_err());
    assert_eq!(RotationConfig::default().week_start(), DEFAULT_FIRST_WEEK_DAY);
}

#[test]
fn failed_save_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yml", CONFIG_06);

    // The write fails half way: the target is untouched and the temporary file is gone.
    let err = write_atomic(&path, |file| {
        file.write_all(b"default:\n  access_key: trunc")?;
        Err(io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::Io { action: "save", .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG_06);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");

    // The rename fails (the target is a non-empty directory): its contents stay, no temporary file is left.
    let target = dir.path().join("as_dir.yml");
    fs::create_dir(&target).unwrap();
    write(&target, "inside", "keep me");
    let config = Config::from_yaml(&target, CONFIG_06).unwrap();
    assert!(matches!(config.save(), Err(ConfigError::Io { .. })));
    assert_eq!(fs::read_to_string(target.join("inside")).unwrap(), "keep me");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "temporary file left behind");

    // The parent is a file: nothing can be written, and the file in the way is untouched.
    let blocker = write(dir.path(), "blocker", "not a dir");
    let config = Config::from_yaml(&blocker.join("c.yml"), CONFIG_06).unwrap();
    let err = config.save().unwrap_err();
    assert!(err.to_string().starts_with("cannot save "), "{err}");
    assert_eq!(fs::read_to_string(&blocker).unwrap(), "not a dir");

    // A config that cannot be written as such is refused before the file is touched.
    let mut config = Config::load(&path).unwrap();
    config.set_profile("sync", Profile::default());
    assert!(matches!(config.save(), Err(ConfigError::Invalid { key, .. }) if key == "sync"));
    assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG_06);
}

#[test]
fn save_through_a_symlink_replaces_the_linked_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = write(dir.path(), "real.yml", "default: {s3_bucket: a}\n");
    let link = dir.path().join("link.yml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut config = Config::load(&link).unwrap();
    config.set_profile("default", Profile { s3_bucket: Some("b".into()), ..Profile::default() });
    config.save().unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(Config::load(&real).unwrap().profiles["default"].s3_bucket.as_deref(), Some("b"));
}

#[test]
fn merge_keys_are_applied_as_pyyaml_did() {
    let text = "base: &base\n  access_key: K\n  region_name: eu-west-1\nwork:\n  <<: *base\n  s3_bucket: w\n";
    let config = Config::from_yaml(Path::new("c.yml"), text).unwrap();
    let work = &config.profiles["work"];
    assert_eq!((work.access_key.as_deref(), work.s3_bucket.as_deref()), (Some("K"), Some("w")));
    assert!(work.extra.is_empty(), "{:?}", work.extra);
}

#[test]
fn set_profile_keeps_the_others_and_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yml", "zeta: {s3_bucket: z}\nsync: {url: u}\nalpha: {s3_bucket: a}\n");
    let mut config = Config::load(&path).unwrap();
    config.set_profile("middle", Profile { s3_bucket: Some("m".into()), ..Profile::default() });
    config.set_profile("alpha", Profile { s3_bucket: Some("a2".into()), ..Profile::default() });
    config.save().unwrap();
    let after = raw(&path);
    let keys: Vec<_> = after.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(keys, ["zeta", "sync", "alpha", "middle"]);
    assert_eq!(after["alpha"]["s3_bucket"], Value::from("a2"));
    assert_eq!(after["sync"]["url"], Value::from("u"));
}

#[test]
fn backend_hash_matches_06() {
    // Reference value from the 0.6 e2e dump (also `printf AKIDEXAMPLEmybucket | sha512sum`).
    let hash = backend_hash("AKIDEXAMPLE", "mybucket");
    assert_eq!(
        hash,
        "69c02b2e6d9c5dc7c55c1057fc4510a6e4008320d3eeffc5a679c00d523e6e6d\
             0857832021139400ba9c4ce1996ea65496f102eb10433118b51fbbec48f6cb32"
    );
}

#[test]
fn config_path_precedence() {
    let home = Some(PathBuf::from("/home/u"));
    let cli = Path::new("/etc/b.yml");
    assert_eq!(resolve_config_path(Some(cli), Some("/env.yml".into()), home.clone()), cli);
    assert_eq!(resolve_config_path(None, Some("/env.yml".into()), home.clone()), Path::new("/env.yml"));
    assert_eq!(resolve_config_path(None, Some("".into()), home.clone()), Path::new("/home/u/.bakthat.yml"));
    assert_eq!(resolve_config_path(None, None, home), Path::new("/home/u/.bakthat.yml"));
}

#[test]
fn debug_hides_secrets() {
    let config = Config::from_yaml(Path::new("c.yml"), CONFIG_06).unwrap();
    let shown = format!("{config:?}");
    for secret in ["wJalrXUtnFEMI", "hunter2", "s3cret", "tok123", "swiftsecret"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("AKIDEXAMPLE"));
}

#[test]
fn serde_deserialize_reports_the_key() {
    let p: Profile = serde_norway::from_str("compress: off\nauth_version: 3\n").unwrap();
    assert!(!p.compress && p.auth_version.as_deref() == Some("3"));
    let err = serde_norway::from_str::<Profile>("rotation: {days: x}\n").unwrap_err();
    assert!(err.to_string().contains("`rotation.days`"), "{err}");
}

/// Any YAML value, with strings drawn to hit quoting edge cases.
fn any_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "[a-zA-Z0-9 _:#,.'\"\\-\\[\\]{}!&*|>%@`~?=+/]{0,12}",
        Just("yes".to_string()),
        Just("No".to_string()),
        Just("1:30".to_string()),
        Just("2024-01-01".to_string()),
        Just("0777".to_string()),
        Just("inf".to_string()),
        Just(".nan".to_string()),
        Just("- x".to_string()),
        Just(" lead".to_string()),
        Just("trail ".to_string()),
        Just("line\nbreak\ttab\r\u{85}\u{2028}\u{1}é😀".to_string()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e300f64..1.0e300).prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((text.clone(), inner), 0..4)
                .prop_map(|entries| Value::Mapping(entries.into_iter().map(|(k, v)| (Value::String(k), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn emitted_yaml_reads_back_the_same(value in any_value()) {
        let text = emit_document(&value);
        let back: Value = serde_norway::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, value, "{}", text);
    }

    #[test]
    fn profiles_round_trip_through_save(
        strings in prop::collection::vec(prop::option::of("[ -~]{0,10}"), 4),
        days in prop::option::of(0i64..1000),
        first_week_day in prop::option::of(0i64..7),
        compress: bool,
        extra in any_value(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::empty(&dir.path().join("c.yml"));
        let profile = Profile {
            access_key: strings[0].clone(),
            secret_key: strings[1].clone(),
            s3_bucket: strings[2].clone(),
            auth_version: strings[3].clone(),
            compress,
            rotation: Some(RotationConfig { days, first_week_day, ..RotationConfig::default() }),
            extra: [("unknown".to_string(), extra)].into_iter().collect(),
            ..Profile::default()
        };
        config.set_profile("p", profile);
        config.save().unwrap();
        let back = Config::load(config.path()).unwrap();
        prop_assert_eq!(back.profiles, config.profiles);
    }
}
