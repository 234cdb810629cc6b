//! The `ficus` binary: configuration errors, `env`, `--help`.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the real binary with settings pointing at `dir`, plus `env`.
pub fn ficus(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ficus"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FICUS_KEYS__DIR", dir.join("keys"))
        .env("FICUS_STORAGE__DATA_DIR", dir.join("data"))
        .env("FICUS_WORLD__FILE", concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml"))
        .env("FICUS_LOG__LEVEL", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn assert_one_line_config_error(output: &Output, setting: &str) -> String {
    assert_eq!(output.status.code(), Some(2), "exit status");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with(&format!("ficus: configuration error: {setting}: ")), "{stderr}");
    stderr
}

#[test]
fn unknown_setting_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["serve"], &[("FICUS_SERVER__ADRESS", "127.0.0.1:1")]);
    let stderr = assert_one_line_config_error(&output, "server.adress");
    assert!(stderr.contains("unknown setting"), "{stderr}");
}

#[test]
fn unknown_setting_in_a_config_file_is_named_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ficus.toml");
    std::fs::write(&file, "[keys]\nalgoritm = \"ES256\"\n").unwrap();
    let output = ficus(dir.path(), &["--config", file.to_str().unwrap(), "serve"], &[]);
    assert_one_line_config_error(&output, "keys.algoritm");
}

#[test]
fn bad_port_stops_startup_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["serve"], &[("FICUS_SERVER__ADDR", "127.0.0.1:99999")]);
    assert_one_line_config_error(&output, "server.addr");
}

#[test]
fn missing_certificate_file_stops_startup_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FICUS_TLS__MODE", "files"),
        ("FICUS_TLS__CERT_FILE", "/nonexistent/server.pem"),
        ("FICUS_TLS__KEY_FILE", "/nonexistent/server.key"),
    ];
    let output = ficus(dir.path(), &["serve"], &env);
    let stderr = assert_one_line_config_error(&output, "tls.cert_file");
    assert!(stderr.contains("no such file: /nonexistent/server.pem"), "{stderr}");
}

#[test]
fn bad_enum_value_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["serve"], &[("FICUS_KEYS__ALGORITHM", "HS256")]);
    assert_one_line_config_error(&output, "keys.algorithm");
}

#[test]
fn missing_config_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["--config", "/nonexistent.toml", "serve"], &[]);
    assert_one_line_config_error(&output, "--config");
}

#[test]
fn a_port_in_use_is_reported_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // The HTTPS listener on any free port, so that only the taken one can fail (a broker already
    // running on the default one must not decide this test).
    let env = [("FICUS_SERVER__ADDR", "127.0.0.1:0"), ("FICUS_SERVER__MI_ADDR", addr.as_str())];
    let output = ficus(dir.path(), &["serve"], &env);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(&format!("server.mi_addr: cannot listen on {addr}")), "{stderr}");
}

#[test]
fn env_prints_authority_tenant_and_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["env"], &[]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("export AZURE_AUTHORITY_HOST=https://localhost:8443\n"), "{stdout}");
    assert!(stdout.contains("export AZURE_TENANT_ID=5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17\n"), "{stdout}");
    let ca = dir.path().join("keys/dev-ca.pem");
    assert!(stdout.contains(&format!("export REQUESTS_CA_BUNDLE={}", ca.display())), "{stdout}");
    assert!(stdout.contains("disable_instance_discovery=True"), "{stdout}");
}

#[test]
fn env_for_an_unknown_tenant_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["env", "--tenant", "nope"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr).unwrap().contains("no tenant nope"));
}

#[test]
fn help_names_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["--help"], &[]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    for command in ["serve", "keys", "env"] {
        assert!(stdout.contains(command), "{stdout}");
    }
}

/// The binary with nothing but PATH, run in `cwd`.
fn ficus_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ficus"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

#[test]
fn relative_paths_in_a_config_file_are_its_directorys_so_commands_work_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let world = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-world.toml");
    std::fs::copy(world, dir.path().join("world.toml")).unwrap();
    let config = dir.path().join("ficus.toml");
    std::fs::write(
        &config,
        "[keys]\ndir = \"state/keys\"\n[storage]\ndata_dir = \"state/data\"\n[world]\nfile = \"world.toml\"\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();

    let output = ficus_in(elsewhere.path(), &["--config", config.to_str().unwrap(), "env"]);

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let ca = dir.path().join("state/keys/dev-ca.pem");
    assert!(stdout.contains(&format!("export REQUESTS_CA_BUNDLE={}", ca.display())), "{stdout}");
    assert!(stdout.contains("export AZURE_TENANT_ID=5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17"), "{stdout}");
}

#[test]
fn a_relative_path_that_names_nothing_is_reported_with_the_directory_it_was_resolved_in() {
    let elsewhere = tempfile::tempdir().unwrap();
    let cwd = elsewhere.path().canonicalize().unwrap();

    let env = ficus_in(&cwd, &["env"]);
    let stderr = String::from_utf8(env.stderr).unwrap();
    assert!(
        stderr.contains(&format!("world.file: no such file: config/demo-world.toml (relative to {})", cwd.display())),
        "{stderr}"
    );

    // An admin command does not read the world file: what it misses is the admin credentials.
    let admin = ficus_in(&cwd, &["app", "list"]);
    let stderr = String::from_utf8(admin.stderr).unwrap();
    assert!(!stderr.contains("world.file"), "{stderr}");
    assert!(
        stderr.contains(&format!("keys/admin/demo.json (relative to {}): no admin credentials", cwd.display())),
        "{stderr}"
    );
}

#[test]
fn serve_with_a_missing_world_file_stops_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let output = ficus(dir.path(), &["serve"], &[("FICUS_WORLD__FILE", "/nonexistent/world.toml")]);
    assert_eq!(output.status.code(), Some(2), "a setting is wrong");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("world.file: no such file: /nonexistent/world.toml"), "{stderr}");
    assert!(!dir.path().join("data").exists() && !dir.path().join("keys").exists(), "nothing was created");
}
