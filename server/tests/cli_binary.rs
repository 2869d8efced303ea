//! The binary as the Helm chart runs it: invoked as `vllm` through a symlink, `vllm serve …`
//! help, argparse-style usage errors (exit 2), a load failure (exit 1), and a real serve that
//! answers /health and exits 0 on SIGTERM. Children get an explicit environment.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `vllm` symlink to the built binary, in its own directory per test.
fn vllm(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-binary-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("vllm");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_candela"), &link).unwrap();
    link
}

fn run(bin: &PathBuf, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_through_the_vllm_name() {
    let out = run(&vllm("help"), &["serve", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.starts_with("usage: vllm serve"), "{help}");
    for flag in [
        "--served-model-name",
        "--kv-transfer-config",
        "--no-enable-prefix-caching",
        "--gpu-memory-utilization",
        "--max-loras",
        "--tensor-parallel-size",
    ] {
        assert!(help.contains(flag), "{flag} missing");
    }
}

#[test]
fn usage_errors_exit_2() {
    let bin = vllm("errors");
    let out = run(
        &bin,
        &[
            "serve",
            "org/model",
            "--port",
            "8000",
            "--foo",
            "--max_model_len",
            "16",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("vllm serve: error: unrecognized arguments: --foo"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&bin, &["serve", "org/model", "--dtype", "fp64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("argument --dtype: invalid choice: 'fp64'"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &PathBuf::from(env!("CARGO_BIN_EXE_candela")),
        &["serve", "--port", "8000"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr)
        .contains("candela serve: error: the following arguments are required: model_tag"));
}

#[test]
fn load_failure_exits_nonzero_with_the_reason() {
    let out = run(
        &vllm("missing"),
        &["serve", "/nonexistent/candela-model", "--port", "0"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/candela-model"),
        "{}",
        text(&out.stderr)
    );
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

#[test]
fn serves_the_chart_command_line_and_exits_0_on_sigterm() {
    let model = format!("{}/../../shared/fixtures/llama", env!("CARGO_MANIFEST_DIR"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(vllm("serve"))
        .args([
            "serve",
            &model,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--no-enable-prefix-caching",
            "--max-model-len",
            "256",
        ])
        .args([
            "--gpu_memory_utilization",
            "0.9",
            "--max_loras",
            "2",
            "--served-model-name",
            "tiny",
            "tiny-alias",
            "--kv-cache-memory-bytes",
            "16M",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HF_HUB_OFFLINE", "1")
        .env("VLLM_SOME_FUTURE_KNOB", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut healthy = false;
    while start.elapsed() < Duration::from_secs(120) {
        if get(port, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            healthy = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let models = if healthy {
        get(port, "/v1/models")
    } else {
        None
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(healthy, "never healthy: {stderr}");
    let models = models.unwrap_or_default();
    assert!(
        models.contains("\"tiny\"") && models.contains("\"tiny-alias\""),
        "{models}"
    );
    assert!(
        stderr.contains("--gpu-memory-utilization 0.9 is accepted and ignored"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
