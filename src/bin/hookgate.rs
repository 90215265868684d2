//! `hookgate check FILE...` and `hookgate explain --config FILE URL [--resolved ADDR...]`
//! (docs/operators.md). Exit status: 0 fine (or sent; warnings allowed), 1 problems found (or
//! refused), 2 usage.

use hookgate::config::Settings;
use hookgate::operator;
use std::process::ExitCode;

const USAGE: &str =
    "usage: hookgate check FILE...\n       hookgate explain --config FILE URL [--resolved ADDR...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((command, rest)) if command == "check" && !rest.is_empty() => check(rest),
        Some((command, rest)) if command == "explain" => explain(rest),
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn check(paths: &[String]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        let (problems, warnings) = match read(path) {
            Ok(text) => (operator::check(&text), operator::warnings(&text)),
            Err(why) => (vec![why], Vec::new()),
        };
        for warning in &warnings {
            println!("{path}: warning: {warning}");
        }
        for problem in &problems {
            println!("{path}: {problem}");
        }
        if problems.is_empty() {
            println!("{path}: ok");
        }
        failed |= !problems.is_empty();
    }
    ExitCode::from(u8::from(failed))
}

fn explain(args: &[String]) -> ExitCode {
    let (mut config, mut url, mut resolved) = (None, None, Vec::new());
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--config" => config = rest.next(),
            "--resolved" => resolved.extend(rest.next().cloned()),
            _ if url.is_none() => url = Some(arg),
            _ => return usage(),
        }
    }
    let (Some(path), Some(url)) = (config, url) else {
        return usage();
    };
    let settings = read(path)
        .and_then(|text| operator::plugin_configs(&text))
        .and_then(|found| {
            let first = found.first().ok_or("no plugin configuration")?;
            Settings::parse(first.text.as_bytes()).map_err(|why| format!("{}: {why}", first.place))
        });
    let settings = match settings {
        Ok(settings) => settings,
        Err(why) => {
            eprintln!("{path}: {why}");
            return ExitCode::from(2);
        }
    };
    let (sent, lines) = operator::explain(&settings, url, &resolved);
    for line in lines {
        println!("{line}");
    }
    ExitCode::from(u8::from(!sent))
}
