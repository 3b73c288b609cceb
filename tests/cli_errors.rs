//! Issue #15, "the CLI speaks to people": each failure path of the command line prints its
//! error once, in words, with the fix when there is one, in English and in Chinese. The real
//! binary runs as an operator would start it (no `RUST_LOG`, the language from `LANG`), and
//! its whole stderr is compared, so a second report of the same error, a debug dump or a log
//! line with a timestamp fails the test.

#![cfg(test)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `ota-console ARGS` under `LANG=lang` with its data in `data_dir`.
fn run(lang: &str, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("LANGUAGE")
        .env("LANG", lang)
        .env("OTA_CONSOLE_DATA_DIR", data_dir)
        .output()
        .expect("run ota-console")
}

/// Asserts the exit code and the exact stderr.
fn expect(out: &Output, code: i32, stderr: &str) {
    let got = String::from_utf8_lossy(&out.stderr);
    assert_eq!(got, stderr, "stderr differs");
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {got}");
}

const EN: &str = "C.UTF-8";
const ZH: &str = "zh_CN.UTF-8";

/// Loopback only, any free port: the embedded broker and firmware server of a run.
const LOCAL: [&str; 4] = ["--listen", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"];

#[test]
fn a_missing_firmware_file_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing.bin");
    let file = file.to_str().unwrap();
    let mut args = vec!["rollout"];
    args.extend(LOCAL);
    args.extend([
        "--firmware",
        file,
        "--version",
        "2",
        "--target",
        "aliyun:pk/dn",
    ]);
    expect(
        &run(EN, dir.path(), &args),
        2,
        &format!(
            "error: cannot import {file}: cannot open {file}: No such file or directory (os error 2)\n"
        ),
    );
    expect(
        &run(ZH, dir.path(), &args),
        2,
        &format!("错误：无法导入 {file}：无法打开 {file}：文件或目录不存在（系统错误 2）\n"),
    );
}

#[test]
fn a_taken_port_says_how_to_use_the_broker_there() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let port = addr.port();
    let listen = addr.to_string();
    let args = [
        "rollout",
        "--listen",
        &listen,
        "--http-bind",
        "127.0.0.1:0",
        "--firmware",
        "fw.bin",
        "--version",
        "2",
        "--target",
        "aliyun:pk/dn",
    ];
    expect(
        &run(EN, dir.path(), &args),
        2,
        &format!(
            "error: cannot start: cannot start the embedded MQTT broker: {addr} is already in \
             use. If another broker (e.g. Mosquitto) is running there, use it with `--broker \
             mqtt://127.0.0.1:{port}`, or choose another port for the embedded broker\n"
        ),
    );
    expect(
        &run(ZH, dir.path(), &args),
        2,
        &format!(
            "错误：无法启动：无法启动内置 MQTT 代理：{addr} 已被占用。如果那里运行着另一个代理\
             （例如 Mosquitto），请用 `--broker mqtt://127.0.0.1:{port}` 使用它，或为内置代理\
             选择其他端口\n"
        ),
    );
}

#[test]
fn usage_mistakes_name_the_flags_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &[
                "rollout",
                "--include-remembered",
                "--firmware",
                "f",
                "--version",
                "2",
            ],
            "error: --include-remembered only applies with --all\n",
            "错误：--include-remembered 只能与 --all 一起使用\n",
        ),
        (
            &[
                "rollout",
                "--url",
                "ftp://x",
                "--firmware",
                "f",
                "--version",
                "2",
                "--target",
                "aliyun:a/b",
            ],
            "error: --url \"ftp://x\" must be an http:// or https:// URL\n",
            "错误：--url \"ftp://x\" 必须是 http:// 或 https:// 开头的 URL\n",
        ),
        (
            &["broker-config"],
            "error: nothing to do: give --mosquitto DIR, --import-alibaba-csv FILE, --add-user \
             NAME, --export-ca FILE or --issue-cert NAME --out DIR\n",
            "错误：无事可做：请给出 --mosquitto DIR、--import-alibaba-csv FILE、--add-user NAME、\
             --export-ca FILE 或 --issue-cert NAME --out DIR\n",
        ),
        (
            &["sim", "--summary-secs", "0"],
            "error: --summary-secs must be more than 0\n",
            "错误：--summary-secs 必须大于 0\n",
        ),
    ];
    for (args, en, zh) in cases {
        expect(&run(EN, dir.path(), args), 2, en);
        expect(&run(ZH, dir.path(), args), 2, zh);
    }
}

/// The whole 30 s wait for a broker that refuses connections: the loss is said once as it
/// happens, and the verdict once, in words (never the link state's debug form).
#[test]
fn an_unreachable_broker_is_reported_in_words() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = format!("mqtt://127.0.0.1:{port}");
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, b"firmware").unwrap();
    let args = [
        "rollout",
        "--broker",
        &broker,
        "--http-bind",
        "127.0.0.1:0",
        "--firmware",
        fw.to_str().unwrap(),
        "--version",
        "2",
        "--target",
        "aliyun:pk/dn",
        "--discover-for",
        "0s",
    ];
    // Both languages at once: each waits the full 30 s.
    let (en_dir, zh_dir) = (dir.path().join("en"), dir.path().join("zh"));
    let en = std::thread::scope(|s| {
        let zh = s.spawn(|| run(ZH, &zh_dir, &args));
        let en = run(EN, &en_dir, &args);
        (en, zh.join().unwrap())
    });
    let (en, zh) = en;
    let attempts = |text: &str| -> String {
        // The number of attempts depends on timing; everything else is fixed. Each run of
        // digits after the last parenthesis becomes one `N`.
        let open = text.rfind(['(', '（']).unwrap();
        let mut out = text[..open].to_owned();
        let mut in_number = false;
        for c in text[open..].chars() {
            if c.is_ascii_digit() {
                if !in_number {
                    out.push('N');
                }
                in_number = true;
            } else {
                out.push(c);
                in_number = false;
            }
        }
        out
    };
    let en_err = String::from_utf8_lossy(&en.stderr);
    let reason = format!("cannot reach broker at {broker}: connection refused (is it running?)");
    let lines: Vec<&str> = en_err.lines().collect();
    assert_eq!(lines.len(), 3, "{en_err}");
    // The import and the first failed attempt happen at once: either may be said first.
    let warning = format!("warning: MQTT broker connection lost, reconnecting: {reason}");
    let (warned, package) = if lines[0] == warning { (0, 1) } else { (1, 0) };
    assert_eq!(lines[warned], warning, "{en_err}");
    assert!(
        lines[package].starts_with("fw.bin: 8 bytes, md5 "),
        "{en_err}"
    );
    assert_eq!(
        attempts(lines[2]),
        format!("error: no connection to the broker after 30s: {reason} (tried N times)")
    );
    assert_eq!(en.status.code(), Some(2));
    let zh_err = String::from_utf8_lossy(&zh.stderr);
    let reason = format!("无法连接 {broker} 上的代理：连接被拒绝（代理是否在运行？）");
    let lines: Vec<&str> = zh_err.lines().collect();
    assert_eq!(lines.len(), 3, "{zh_err}");
    let warning = format!("警告：与 MQTT 代理的连接中断，正在重连：{reason}");
    let (warned, package) = if lines[0] == warning { (0, 1) } else { (1, 0) };
    assert_eq!(lines[warned], warning, "{zh_err}");
    assert!(
        lines[package].starts_with("fw.bin：8 字节，md5 "),
        "{zh_err}"
    );
    assert_eq!(
        attempts(lines[2]),
        format!("错误：30s 后仍未连上代理：{reason}（已尝试 N 次）")
    );
    assert_eq!(zh.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// The library's errors as the command line says them (helper i18n-engine): the words of
// `CredentialsError` (a file, a column, a line), said once (the I/O error is not repeated as
// a cause), in both languages.

#[test]
fn library_errors_reach_the_command_line_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.csv");
    let no_secret = dir.path().join("no-secret.csv");
    std::fs::write(&no_secret, "ProductKey,DeviceName\npk,dn\n").unwrap();
    let empty_name = dir.path().join("empty-name.csv");
    std::fs::write(&empty_name, "ProductKey,DeviceName,DeviceSecret\npk,,s\n").unwrap();
    let (missing, no_secret, empty_name) = (
        missing.to_str().unwrap(),
        no_secret.to_str().unwrap(),
        empty_name.to_str().unwrap(),
    );
    let cases = [
        (
            missing,
            format!("error: {missing}: no such file\n"),
            format!("错误：{missing}：文件或目录不存在\n"),
        ),
        (
            no_secret,
            format!(
                "error: {no_secret}: no DeviceSecret column (the header needs ProductKey, \
                 DeviceName and DeviceSecret)\n"
            ),
            format!(
                "错误：{no_secret}：缺少 DeviceSecret 列（表头需要 ProductKey、DeviceName 和 \
                 DeviceSecret）\n"
            ),
        ),
        (
            empty_name,
            format!("error: {empty_name} line 2: DeviceName is missing or empty\n"),
            format!("错误：{empty_name} 第 2 行：DeviceName 缺失或为空\n"),
        ),
    ];
    for (csv, en, zh) in cases {
        let args = ["broker-config", "--import-alibaba-csv", csv];
        expect(&run(EN, dir.path(), &args), 2, &en);
        expect(&run(ZH, dir.path(), &args), 2, &zh);
    }
}
