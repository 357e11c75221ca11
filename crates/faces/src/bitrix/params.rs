//! Bitrix parameters: query string, JSON, `application/x-www-form-urlencoded`
//! and multipart bodies, all with PHP-style nested keys
//! (`FIELDS[USERS][0]=5`, `select[]=ID`), merged into one JSON object.
//! Lookups ignore case, as Bitrix's PHP does (`array_change_key_case`).

use serde_json::{Map, Value};

#[derive(Debug, Clone, Default)]
pub struct Params(pub Map<String, Value>);

/// Why a parameter could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// Present but of the wrong type.
    BadType(String),
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).or_else(|| {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    }

    /// Present and not empty (`""`, `null`, `[]`, `{}` count as absent).
    pub fn present(&self, name: &str) -> Option<&Value> {
        self.get(name).filter(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.trim().is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        })
    }

    /// An integer given as a JSON number or a numeric string.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ParamError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => as_int(v).map(Some).ok_or_else(|| ParamError::BadType(name.to_string())),
        }
    }

    pub fn str(&self, name: &str) -> Option<String> {
        match self.present(name)? {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(if *b { "Y".into() } else { "N".into() }),
            _ => None,
        }
    }

    /// A list of integers: a JSON array, a PHP array (`USERS[0]=1` → an
    /// object keyed "0", "1", ...), or a single integer.
    pub fn int_list(&self, name: &str) -> Result<Option<Vec<i64>>, ParamError> {
        let Some(v) = self.present(name) else { return Ok(None) };
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(o) => o.values().collect(),
            other => vec![other],
        };
        items
            .into_iter()
            .map(|i| as_int(i).ok_or_else(|| ParamError::BadType(name.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `Y`/`N`, `1`/`0`, `true`/`false`.
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.present(name)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => Some(n.as_i64() != Some(0)),
            Value::String(s) => Some(matches!(s.to_ascii_uppercase().as_str(), "Y" | "1" | "TRUE")),
            _ => None,
        }
    }

    pub fn object(&self, name: &str) -> Option<Params> {
        match self.present(name)? {
            Value::Object(o) => Some(Params(o.clone())),
            _ => None,
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let key = self.0.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()?;
        self.0.remove(&key)
    }

    /// Adds pairs from a query string or form body.
    pub fn merge_form(&mut self, text: &str) {
        for (k, v) in form_urlencoded(text) {
            insert_php(&mut self.0, &k, Value::String(v));
        }
    }

    /// Adds the members of a JSON object body.
    pub fn merge_json(&mut self, v: Value) -> bool {
        match v {
            Value::Object(o) => {
                self.0.extend(o);
                true
            }
            _ => false,
        }
    }

    pub fn insert(&mut self, key: &str, v: Value) {
        insert_php(&mut self.0, key, v);
    }
}

pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Decodes `a=1&b%5B0%5D=2` (with `+` as space).
pub fn form_urlencoded(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `FIELDS[USERS][0]` into `["FIELDS", "USERS", "0"]`; `a[]` gives
/// an empty last segment (append).
fn php_path(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_string()];
    };
    let mut parts = vec![key[..open].to_string()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                parts.push(stripped[..close].to_string());
                rest = &stripped[close + 1..];
            }
            None => break,
        }
    }
    parts
}

/// PHP's `max_input_nesting_level` default: deeper keys are dropped, so a
/// hostile `a[][][]...` key cannot exhaust the stack.
pub const MAX_NESTING: usize = 64;

fn insert_php(map: &mut Map<String, Value>, key: &str, v: Value) {
    let path = php_path(key);
    if path.len() > MAX_NESTING {
        return;
    }
    insert_path(map, &path, v);
}

fn insert_path(map: &mut Map<String, Value>, path: &[String], v: Value) {
    let Some((head, rest)) = path.split_first() else { return };
    let head = if head.is_empty() {
        map.len().to_string()
    } else {
        head.clone()
    };
    if rest.is_empty() {
        map.insert(head, v);
        return;
    }
    let entry = map.entry(head).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(inner) = entry {
        insert_path(inner, rest, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn php_keys_nest() {
        let mut p = Params::default();
        p.merge_form("FIELDS%5BUSERS%5D%5B0%5D=5&FIELDS[USERS][1]=6&select[]=ID&select[]=NAME&CHAT_ID=13&T=a+b");
        assert_eq!(p.get("FIELDS"), Some(&json!({"USERS": {"0": "5", "1": "6"}})));
        assert_eq!(p.object("fields").unwrap().int_list("USERS").unwrap(), Some(vec![5, 6]));
        assert_eq!(p.get("select"), Some(&json!({"0": "ID", "1": "NAME"})));
        assert_eq!(p.int("chat_id").unwrap(), Some(13), "case-insensitive");
        assert_eq!(p.str("T").as_deref(), Some("a b"));
    }

    #[test]
    fn hostile_nesting_is_dropped() {
        let mut p = Params::default();
        let deep = format!("a{}=1&b[0]=2", "[]".repeat(200_000));
        p.merge_form(&deep);
        assert!(p.get("a").is_none());
        assert_eq!(p.int_list("b").unwrap(), Some(vec![2]));
    }

    #[test]
    fn ints_from_numbers_and_strings() {
        let mut p = Params::default();
        p.merge_json(json!({"A": 1, "B": "2", "C": "x", "D": "", "E": [1, "2"]}));
        assert_eq!(p.int("A").unwrap(), Some(1));
        assert_eq!(p.int("B").unwrap(), Some(2));
        assert!(p.int("C").is_err());
        assert_eq!(p.int("D").unwrap(), None);
        assert_eq!(p.int_list("E").unwrap(), Some(vec![1, 2]));
    }
}
