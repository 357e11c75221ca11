//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and for the
//! corpus replay test that runs in `scripts/test`: every parser that takes
//! client bytes, reached with arbitrary bytes. None may panic; errors are
//! the expected answer to garbage.

use crate::bitrix::params::{form_urlencoded, Params};
use serde_json::{Map, Value};

/// Bitrix PHP-style form keys (`a[b][c]=…`) and JSON bodies, then every
/// accessor a method uses.
pub fn bitrix_params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut p = Params::default();
    p.merge_form(&text);
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        p.merge_json(v);
    }
    for name in ["CHAT_ID", "USER_ID", "USERS", "BOT_ID", "auth", "cmd", "halt", "FIELDS"] {
        let _ = p.get(name);
        let _ = p.int(name);
        let _ = p.str(name);
        let _ = p.int_list(name);
        let _ = p.flag(name);
        let _ = p.object(name);
    }
    let _ = form_urlencoded(&text);
}

/// Bitrix `batch` commands: `method?query` with `$result[...]` references.
pub fn bitrix_batch_cmd(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut results = Map::new();
    results.insert("a".into(), serde_json::json!({"ID": 5, "list": [1, 2, {"x": "y"}]}));
    results.insert("0".into(), Value::from(7));
    for line in text.split('\n') {
        let (name, params) = crate::bitrix::batch::parse_command(line, &results);
        let _ = (name, params.int("CHAT_ID"));
    }
}

/// Chert: the signature header, chat ids and JSON bodies.
pub fn chert(data: &[u8]) {
    crate::chert::fuzz_input(data);
}

/// Linq: chat ids and JSON bodies.
pub fn linq(data: &[u8]) {
    crate::linq::fuzz_input(data);
}

/// Vibecode: chat and dialog ids, JSON bodies, paging.
pub fn vibecode(data: &[u8]) {
    crate::vibecode::fuzz_input(data);
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name: (name, entry point).
pub const TARGETS: &[(&str, Target)] = &[
    ("bitrix_params", bitrix_params),
    ("bitrix_batch_cmd", bitrix_batch_cmd),
    ("chert", chert),
    ("linq", linq),
    ("vibecode", vibecode),
];
