//! A profile's 0.6 `plugins:` under the Rust binary, which cannot import Python: one line saying how to run them
//! (the Python package's `bakthat` command), and the action goes on. The package's own tests (python/tests) run
//! the plugins through it.

use crate::common::cli::Home;

#[test]
fn a_profile_with_plugins_gets_one_line_telling_how_to_run_them() {
    let home = Home::new(|d| {
        format!(
            "default:\n  local_path: {}\n  plugins: [timer_plugin.TimerPlugin, other.Plugin]\n",
            d.join("store").display()
        )
    });
    let src = home.path("mydir");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let out = home.run(&["backup", "--prompt", "no", src.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("plugins")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0]
            .starts_with("bakthat: warning: profile default lists plugins (timer_plugin.TimerPlugin, other.Plugin)"),
        "{stderr}"
    );
    assert!(lines[0].contains("pip install ./python"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("stored mydir."));
}
