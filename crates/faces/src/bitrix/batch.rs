//! `batch` (`settings/how-to-call-rest-api/batch.md`): `cmd` as an object
//! or array of `method?query` strings, `halt`, `$result[cmd][field]…`
//! references to earlier answers, at most 50 commands; always HTTP 200 with
//! `result` / `result_error` / `result_total` / `result_next` /
//! `result_time`.

use super::auth::Ctx;
use super::envelope::{system, Clock};
use super::methods::{self, scope_of};
use super::params::{form_urlencoded, Params};
use crate::AppState;
use serde_json::{json, Map, Value};

pub const MAX_COMMANDS: usize = 50;

/// PHP's json_encode: an array with keys 0..n in order is a JSON array, an
/// empty one is `[]`, anything else an object.
fn php(entries: Vec<(String, Value)>, listy: bool) -> Value {
    if entries.is_empty() {
        return json!([]);
    }
    if listy && entries.iter().enumerate().all(|(i, (k, _))| *k == i.to_string()) {
        return Value::Array(entries.into_iter().map(|(_, v)| v).collect());
    }
    Value::Object(entries.into_iter().collect::<Map<_, _>>())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Replaces every `$result[name][field]...` in `text` with the value found
/// in the earlier results.
fn substitute(text: &str, results: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find("$result[") {
        out.push_str(&rest[..pos]);
        let mut tail = &rest[pos + "$result".len()..];
        let mut path = Vec::new();
        while let Some(inner) = tail.strip_prefix('[') {
            let Some(close) = inner.find(']') else { break };
            path.push(inner[..close].to_string());
            tail = &inner[close + 1..];
        }
        let mut cur = path.first().and_then(|k| results.get(k));
        for seg in path.iter().skip(1) {
            cur = cur.and_then(|v| match v {
                Value::Object(o) => o
                    .get(seg)
                    .or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(seg)).map(|(_, v)| v)),
                Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            });
        }
        out.push_str(&cur.map(scalar).unwrap_or_default());
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// One `cmd` entry, `method?query`: the lower-case method name and its
/// parameters, each `$result[...]` replaced from the earlier results.
pub fn parse_command(command: &str, results: &Map<String, Value>) -> (String, Params) {
    let (name, query) = command.split_once('?').unwrap_or((command, ""));
    let name = name.trim().trim_start_matches('/').to_ascii_lowercase();
    let name = name.strip_suffix(".json").unwrap_or(&name).to_string();
    let mut params = Params::default();
    for (k, v) in form_urlencoded(query) {
        params.insert(&k, Value::String(substitute(&v, results)));
    }
    (name, params)
}

pub async fn run(st: &AppState, ctx: &Ctx, p: &Params) -> Value {
    let halt = p.flag("halt").unwrap_or(false);
    let (commands, listy): (Vec<(String, String)>, bool) = match p.get("cmd") {
        Some(Value::Object(o)) => (o.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(), false),
        Some(Value::Array(a)) => (
            a.iter().enumerate().map(|(i, v)| (i.to_string(), scalar(v))).collect(),
            true,
        ),
        _ => (vec![], false),
    };
    let mut results = Map::new();
    let (mut ok, mut errors, mut totals, mut nexts, mut times) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, (key, command)) in commands.into_iter().enumerate() {
        let clock = Clock::start();
        let (name, params) = parse_command(&command, &results);
        let outcome = if i >= MAX_COMMANDS {
            Err(system::batch_length())
        } else if name == "batch" {
            Err(system::batch_not_allowed())
        } else {
            match scope_of(&name) {
                None => Err(system::method_not_found()),
                Some(scope) if !scope.is_empty() && !ctx.scopes.iter().any(|s| s == scope) => {
                    Err(system::insufficient_scope(ctx.webhook))
                }
                Some(_)
                    if st
                        .operating
                        .check(ctx.credential_id, &name, crate::common::now())
                        .is_err() =>
                {
                    Err(system::operation_time_limit())
                }
                Some(_) => {
                    let out = methods::call(st, ctx, &name, &params).await;
                    st.operating
                        .record(ctx.credential_id, &name, crate::common::now(), clock.elapsed());
                    out
                }
            }
        };
        match outcome {
            Ok(o) => {
                results.insert(key.clone(), o.result.clone());
                ok.push((key.clone(), o.result));
                if let Some(t) = o.total {
                    totals.push((key.clone(), json!(t)));
                }
                if let Some(n) = o.next {
                    nexts.push((key.clone(), json!(n)));
                }
                times.push((key, clock.time(0.0, 0)));
            }
            Err(e) => {
                errors.push((key, json!({"error": e.code, "error_description": e.description})));
                if halt {
                    break;
                }
            }
        }
    }
    json!({
        "result": php(ok, listy),
        "result_error": php(errors, false),
        "result_total": php(totals, false),
        "result_next": php(nexts, false),
        "result_time": php(times, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_references() {
        let mut r = Map::new();
        r.insert("chat".into(), json!(42));
        r.insert("bot".into(), json!({"ID": 7, "LIST": [1, 2]}));
        assert_eq!(substitute("CHAT_ID=$result[chat]", &r), "CHAT_ID=42");
        assert_eq!(substitute("$result[bot][ID]-$result[bot][LIST][1]", &r), "7-2");
        assert_eq!(substitute("x=$result[none]", &r), "x=");
    }

    #[test]
    fn php_arrays() {
        assert_eq!(php(vec![], true), json!([]));
        assert_eq!(
            php(vec![("0".into(), json!(1)), ("1".into(), json!(2))], true),
            json!([1, 2])
        );
        assert_eq!(php(vec![("a".into(), json!(1))], false), json!({"a": 1}));
    }
}
