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

/// A campaign to resume that does not exist: the engine's refusal names it; the command adds
/// no second "resuming campaign 99" before it.
#[test]
fn a_campaign_to_resume_that_does_not_exist_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["rollout", "--resume", "99"];
    args.extend(LOCAL);
    expect(
        &run(EN, dir.path(), &args),
        2,
        "error: cannot resume campaign 99: campaign 99 does not exist\n",
    );
    // The reason is the store's sentence (translated with the library's texts): the line is
    // one, and starts with the command's words.
    let out = run(ZH, dir.path(), &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("错误：无法继续升级任务 99："), "{err}");
}

/// Replaces each run of digits after the last parenthesis by one `N`: how many attempts a
/// wait for the broker made depends on timing; everything else is fixed.
fn attempts(text: &str) -> String {
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
}

/// A port nobody listens on: bound, then closed.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker that refuses connections, for `rollout` and `devices`: one status line while the
/// command waits, then the verdict once, in words (never the link state's debug form, never a
/// "connection lost, reconnecting" warning before it). `--connect-timeout` bounds the wait
/// (30 s by default).
#[test]
fn an_unreachable_broker_is_reported_once_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let broker = format!("mqtt://127.0.0.1:{port}");
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, b"firmware").unwrap();
    let rollout = [
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
        "--connect-timeout",
        "2s",
    ];
    let devices = ["devices", "--broker", &broker, "--connect-timeout", "2s"];
    let (en_dir, zh_dir) = (dir.path().join("en"), dir.path().join("zh"));
    // The four runs at once: each waits the whole 2 s.
    let [en_rollout, zh_rollout, en_devices, zh_devices] = std::thread::scope(|s| {
        let runs = [
            s.spawn(|| run(EN, &en_dir, &rollout)),
            s.spawn(|| run(ZH, &zh_dir, &rollout)),
            s.spawn(|| run(EN, &en_dir.join("d"), &devices)),
            s.spawn(|| run(ZH, &zh_dir.join("d"), &devices)),
        ];
        runs.map(|r| r.join().unwrap())
    });
    let lines = |out: &Output| -> Vec<String> {
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::to_owned)
            .collect()
    };

    let reason = format!("cannot reach broker at {broker}: connection refused (is it running?)");
    let waiting = format!("waiting for the broker at {broker} (up to 2s)…");
    let verdict = format!("error: no connection to the broker after 2s: {reason} (tried N times)");
    let en = lines(&en_rollout);
    assert_eq!(en.len(), 3, "{en:#?}");
    assert!(en[0].starts_with("fw.bin: 8 bytes, md5 "), "{en:#?}");
    assert_eq!(en[1], waiting);
    assert_eq!(attempts(&en[2]), verdict);
    let en = lines(&en_devices);
    assert_eq!(en.len(), 2, "{en:#?}");
    assert_eq!(en[0], waiting);
    assert_eq!(attempts(&en[1]), verdict);

    let reason = format!("无法连接 {broker} 上的代理：连接被拒绝（代理是否在运行？）");
    let waiting = format!("正在等待 {broker} 上的代理（最多 2s）……");
    let verdict = format!("错误：2s 后仍未连上代理：{reason}（已尝试 N 次）");
    let zh = lines(&zh_rollout);
    assert_eq!(zh.len(), 3, "{zh:#?}");
    assert!(zh[0].starts_with("fw.bin：8 字节，md5 "), "{zh:#?}");
    assert_eq!(zh[1], waiting);
    assert_eq!(attempts(&zh[2]), verdict);
    let zh = lines(&zh_devices);
    assert_eq!(zh.len(), 2, "{zh:#?}");
    assert_eq!(zh[0], waiting);
    assert_eq!(attempts(&zh[1]), verdict);
}

// ---------------------------------------------------------------------------------------------
// clap's parse errors: what clap itself refuses (an unknown option or command, a missing or
// invalid value, a conflict) is said in the operator's language, as one `error:` line with the
// fix and the command whose `--help` lists the options, exit code 2 as clap's own.
// ---------------------------------------------------------------------------------------------

/// `(arguments, English stderr, Chinese stderr)`.
type Case<'a> = (&'a [&'a str], &'a str, &'a str);

const PARSE_ERRORS: &[Case<'static>] = &[
    (
        &["rollout", "--frimware", "fw.bin"],
        "error: unknown option '--frimware': did you mean '--firmware'? (see `ota-console rollout \
         --help`)\n",
        "错误：未知选项 '--frimware'：是否想用 '--firmware'？（参见 `ota-console rollout --help`）\n",
    ),
    (
        &["--firmware", "fw.bin"],
        "error: unknown option '--firmware' (see `ota-console --help`)\n",
        "错误：未知选项 '--firmware'（参见 `ota-console --help`）\n",
    ),
    (
        &["rolout"],
        "error: unknown command 'rolout': did you mean 'rollout'? (see `ota-console --help`)\n",
        "错误：未知命令 'rolout'：是否想用 'rollout'？（参见 `ota-console --help`）\n",
    ),
    (
        &["devices", "--discover-for"],
        "error: '--discover-for <DURATION>' needs a value (see `ota-console devices --help`)\n",
        "错误：'--discover-for <DURATION>' 需要一个值（参见 `ota-console devices --help`）\n",
    ),
    (
        &["devices", "--discover-for", "soon"],
        "error: 'soon' is not a value of '--discover-for <DURATION>': give a duration such as \
         30s, 5m or 1h (see `ota-console devices --help`)\n",
        "错误：'soon' 不是 '--discover-for <DURATION>' 的有效值：请给出时长，例如 30s、5m 或 1h\
         （参见 `ota-console devices --help`）\n",
    ),
    (
        &["devices", "--listen", "here"],
        "error: 'here' is not a value of '--listen <ADDR>': give an address and port such as \
         127.0.0.1:1883 or 0.0.0.0:8080 (see `ota-console devices --help`)\n",
        "错误：'here' 不是 '--listen <ADDR>' 的有效值：请给出地址和端口，例如 127.0.0.1:1883 或 \
         0.0.0.0:8080（参见 `ota-console devices --help`）\n",
    ),
    (
        &["devices", "--max-connections", "0"],
        "error: '0' is not a value of '--max-connections <N>': give a number of at least 1 (see \
         `ota-console devices --help`)\n",
        "错误：'0' 不是 '--max-connections <N>' 的有效值：请给出不小于 1 的数（参见 \
         `ota-console devices --help`）\n",
    ),
    (
        &["devices", "--keep-alive", "often"],
        "error: 'often' is not a value of '--keep-alive <SECS>': give a whole number (see \
         `ota-console devices --help`)\n",
        "错误：'often' 不是 '--keep-alive <SECS>' 的有效值：请给出一个整数（参见 \
         `ota-console devices --help`）\n",
    ),
    (
        &["--lang", "fr"],
        "error: 'fr' is not a value of '--lang <LANG>': the languages are en and zh-CN (see \
         `ota-console --help`)\n",
        "错误：'fr' 不是 '--lang <LANG>' 的有效值：可选语言为 en 和 zh-CN（参见 \
         `ota-console --help`）\n",
    ),
    (
        &[
            "rollout",
            "--firmware",
            "f",
            "--version",
            "2",
            "--target",
            "aliyun:a/b",
            "--wave",
            "0",
        ],
        "error: '0' is not a value of '--wave <N|P%>': give a number of devices (e.g. 10) or a \
         percentage (e.g. 10%) (see `ota-console rollout --help`)\n",
        "错误：'0' 不是 '--wave <N|P%>' 的有效值：请给出设备数（例如 10）或百分比（例如 10%）\
         （参见 `ota-console rollout --help`）\n",
    ),
    (
        &["rollout", "--version", "2", "--target", "aliyun:a/b"],
        "error: required but not given: '--firmware <FILE>' (see `ota-console rollout --help`)\n",
        "错误：缺少必需的参数：'--firmware <FILE>'（参见 `ota-console rollout --help`）\n",
    ),
    (
        &[
            "rollout",
            "--all",
            "--target",
            "aliyun:a/b",
            "--firmware",
            "f",
            "--version",
            "2",
        ],
        "error: '--all' cannot be used with '--target <ID>': leave one out (see `ota-console \
         rollout --help`)\n",
        "错误：'--all' 不能与 '--target <ID>' 一起使用：请去掉其中一个（参见 `ota-console \
         rollout --help`）\n",
    ),
    (
        &["devices", "--json", "--json"],
        "error: '--json' is given more than once: give it once (see `ota-console devices \
         --help`)\n",
        "错误：'--json' 给出了不止一次：只需给出一次（参见 `ota-console devices --help`）\n",
    ),
];

#[test]
fn parse_errors_are_said_once_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (args, en, zh) in PARSE_ERRORS {
        expect(&run(EN, dir.path(), args), 2, en);
        expect(&run(ZH, dir.path(), args), 2, zh);
    }
}

/// A notice setting's file the command cannot read: the program's own refusal inside clap's
/// parse, with the setting in words and the OS's reason in the language.
#[test]
fn an_unreadable_setting_file_is_said_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("job.json");
    let missing = missing.to_str().unwrap();
    let args = [
        "rollout",
        "--firmware",
        "f",
        "--version",
        "2",
        "--target",
        "aws:pump-7",
        "--aws-job-document",
        missing,
    ];
    expect(
        &run(EN, dir.path(), &args),
        2,
        &format!(
            "error: --aws-job-document: cannot read the job document template {missing}: No \
             such file or directory (os error 2) (see `ota-console rollout --help`)\n"
        ),
    );
    expect(
        &run(ZH, dir.path(), &args),
        2,
        &format!(
            "错误：--aws-job-document：无法读取作业文档模板 {missing}：文件或目录不存在（系统错误 \
             2）（参见 `ota-console rollout --help`）\n"
        ),
    );
}

/// Help is not an error: printed in full on stdout, exit code 0, nothing on stderr.
#[test]
fn help_is_still_printed_by_clap() {
    let dir = tempfile::tempdir().unwrap();
    for lang in [EN, ZH] {
        let out = run(lang, dir.path(), &["rollout", "--help"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("--firmware <FILE>"));
    }
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

// ---- `ota-console sim`: the simulator's own refusals, said once in the operator's language ----

#[test]
fn sim_refuses_a_broker_url_it_cannot_use_and_says_which_form_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, &str); 2] = [
        (
            &["sim", "--broker", "http://127.0.0.1:1", "--aliyun", "1"],
            "error: starting the simulated fleet: broker URL \"http://127.0.0.1:1\" is not \
             usable: only mqtt://host:port is supported (no TLS)\n",
            "错误：启动模拟设备群：代理 URL \"http://127.0.0.1:1\" 不可用：仅支持 \
             mqtt://主机:端口（不支持 TLS）\n",
        ),
        (
            &["sim", "--broker", "mqtt://127.0.0.1:99999", "--aliyun", "1"],
            "error: starting the simulated fleet: broker URL \"mqtt://127.0.0.1:99999\" is not \
             usable: the port is not a number 1..65535\n",
            "错误：启动模拟设备群：代理 URL \"mqtt://127.0.0.1:99999\" 不可用：端口不是 \
             1..65535 之间的数字\n",
        ),
    ];
    for (args, en, zh) in cases {
        expect(&run(EN, dir.path(), args), 2, en);
        expect(&run(ZH, dir.path(), args), 2, zh);
    }
}

#[test]
fn sim_refuses_settings_that_would_do_nothing_and_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, &str); 2] = [
        (
            &["sim", "--aliyun", "1", "--fail-flash", "2"],
            "error: starting the simulated fleet: invalid simulator configuration: --fail-flash \
             is 2; a probability must be between 0 and 1\n",
            "错误：启动模拟设备群：模拟器配置无效：--fail-flash 为 2；概率必须在 0 到 1 之间\n",
        ),
        (
            &["sim", "--aliyun", "1", "--bandwidth", "0"],
            "error: starting the simulated fleet: invalid simulator configuration: --bandwidth 0 \
             would never download anything; leave it out for no cap\n",
            "错误：启动模拟设备群：模拟器配置无效：--bandwidth 0 将永远下载不到任何内容；\
             省略此项则不限速\n",
        ),
    ];
    for (args, en, zh) in cases {
        expect(&run(EN, dir.path(), args), 2, en);
        expect(&run(ZH, dir.path(), args), 2, zh);
    }
}
