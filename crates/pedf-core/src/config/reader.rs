//! A small reader over a spanned TOML tree that records a diagnostic for every missing,
//! mistyped, out-of-range or unknown field instead of stopping at the first.

use std::collections::HashMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Diagnostic, SourceMap};
use crate::validate::{Problem, Severity};

/// A table being read, with its path in the file and the keys asked for so far.
pub(crate) struct Table<'t, 'i> {
    pub path: String,
    pub span: Range<usize>,
    pub table: &'t DeTable<'i>,
    known: Vec<&'static str>,
}

impl<'t, 'i> Table<'t, 'i> {
    pub fn new(path: String, span: Range<usize>, table: &'t DeTable<'i>) -> Self {
        Self {
            path,
            span,
            table,
            known: Vec::new(),
        }
    }

    /// Marks keys as valid in this table without reading them.
    pub fn allow(&mut self, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
    }

    fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn lookup(&self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.table.get(key)
    }
}

/// Reading context: the file, its source map, the diagnostics and the span of every field
/// read (so later meaning checks can point at them).
pub(crate) struct Reader<'a> {
    pub file: &'a str,
    pub map: SourceMap<'a>,
    pub diagnostics: Vec<Diagnostic>,
    spans: HashMap<String, Range<usize>>,
    /// Paths of fields and sections that could not be read.
    failed: Vec<String>,
}

/// Describes the value a field expects, for messages: ("a number", "kWh", "2000").
pub(crate) struct Expect {
    pub what: &'static str,
    pub example: &'static str,
}

pub(crate) const fn expect(what: &'static str, example: &'static str) -> Expect {
    Expect { what, example }
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            map: SourceMap::new(text),
            diagnostics: Vec::new(),
            spans: HashMap::new(),
            failed: Vec::new(),
        }
    }

    pub fn push(&mut self, severity: Severity, span: &Range<usize>, message: String, hint: String) {
        let (line, column) = self.map.locate_span(span);
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            line,
            column,
            message,
            hint: if hint.is_empty() { None } else { Some(hint) },
        });
    }

    pub fn error(&mut self, span: &Range<usize>, message: String, hint: String) {
        self.push(Severity::Error, span, message, hint);
    }

    pub fn record_span(&mut self, path: String, span: Range<usize>) {
        self.spans.insert(path, span);
    }

    /// Copies the recorded spans under `from` (a path prefix) to `to`.
    pub fn alias_spans(&mut self, from: &str, to: &str) {
        let copies: Vec<(String, Range<usize>)> = self
            .spans
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(from)?;
                (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
                    .then(|| (format!("{to}{rest}"), v.clone()))
            })
            .collect();
        self.spans.extend(copies);
    }

    /// Notes that a field or section could not be read, so checks that depend on it are
    /// skipped rather than run on a placeholder.
    pub fn fail(&mut self, path: impl Into<String>) {
        self.failed.push(path.into());
    }

    /// Records a failure of `t.key` when `value` is `None`; passes the value on.
    fn note<T>(&mut self, t: &Table, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.fail(t.field_path(key));
        }
        value
    }

    /// True when a problem depends on something that could not be read: its own field or a
    /// section around it failed, or a related field, or anything inside a related section.
    fn depends_on_failure(&self, p: &Problem) -> bool {
        self.failed
            .iter()
            .any(|f| within(&p.path, f) || p.related.iter().any(|r| within(r, f) || within(f, r)))
    }

    /// Turns a meaning problem into a located diagnostic: at the field's value when it was
    /// written, otherwise at the nearest enclosing table that was. Problems that depend on
    /// unreadable fields are dropped (the unreadable field has its own diagnostic).
    pub fn problem(&mut self, p: Problem) {
        if self.depends_on_failure(&p) {
            return;
        }
        let mut path = p.path.as_str();
        let span = loop {
            if let Some(s) = self.spans.get(path) {
                break s.clone();
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => break 0..0,
            }
        };
        let message = format!("{}: {}", p.path, p.message);
        self.push(p.severity, &span, message, p.hint);
    }

    fn missing(&mut self, t: &Table, key: &str, e: &Expect) {
        let span = t.span.clone();
        let at = table_name(&t.path);
        self.error(
            &span,
            format!("{at} is missing `{key}` ({})", e.what),
            format!("add `{key} = {}`", e.example),
        );
    }

    fn wrong_type(&mut self, t: &Table, key: &str, v: &Spanned<DeValue>, e: &Expect) {
        self.error(
            &v.span(),
            format!(
                "{}: expected {}, found {}",
                t.field_path(key),
                e.what,
                describe(v.get_ref())
            ),
            format!("for example `{key} = {}`", e.example),
        );
    }

    fn take<'t, 'i>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
    ) -> Option<&'t Spanned<DeValue<'i>>> {
        t.known.push(key);
        let v = t.lookup(key)?;
        self.record_span(t.field_path(key), v.span());
        Some(v)
    }

    /// A required finite number (integers accepted).
    pub fn number(&mut self, t: &mut Table, key: &'static str, e: Expect) -> Option<f64> {
        let v = match self.take(t, key) {
            None => {
                self.missing(t, key, &e);
                None
            }
            Some(v) => self.as_number(t, key, v, &e),
        };
        self.note(t, key, v)
    }

    /// An optional finite number; `default` when absent, `None` when present but wrong.
    pub fn number_or(
        &mut self,
        t: &mut Table,
        key: &'static str,
        default: f64,
        e: Expect,
    ) -> Option<f64> {
        let v = match self.take(t, key) {
            None => Some(default),
            Some(v) => self.as_number(t, key, v, &e),
        };
        self.note(t, key, v)
    }

    fn as_number(&mut self, t: &Table, key: &str, v: &Spanned<DeValue>, e: &Expect) -> Option<f64> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => {
                self.wrong_type(t, key, v, e);
                return None;
            }
        };
        match parsed {
            Some(x) if x.is_finite() && x.abs() < 1e15 => Some(x),
            _ => {
                self.error(
                    &v.span(),
                    format!(
                        "{}: {} is not a usable number",
                        t.field_path(key),
                        value_text(v.get_ref())
                    ),
                    format!(
                        "give a finite number below 1e15 ({}), e.g. `{key} = {}`",
                        e.what, e.example
                    ),
                );
                None
            }
        }
    }

    /// A required integer.
    pub fn integer(&mut self, t: &mut Table, key: &'static str, e: Expect) -> Option<i64> {
        let v = match self.take(t, key) {
            None => {
                self.missing(t, key, &e);
                None
            }
            Some(v) => self.as_integer(&t.field_path(key), key, v, &e),
        };
        self.note(t, key, v)
    }

    /// An optional integer; `default` when absent.
    pub fn integer_or(
        &mut self,
        t: &mut Table,
        key: &'static str,
        default: i64,
        e: Expect,
    ) -> Option<i64> {
        let v = match self.take(t, key) {
            None => Some(default),
            Some(v) => self.as_integer(&t.field_path(key), key, v, &e),
        };
        self.note(t, key, v)
    }

    pub fn as_integer(
        &mut self,
        path: &str,
        key: &str,
        v: &Spanned<DeValue>,
        e: &Expect,
    ) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        &v.span(),
                        format!("{path}: integer {} is too large", i.as_str()),
                        format!("{}, e.g. `{key} = {}`", e.what, e.example),
                    );
                    None
                }
            },
            other => {
                self.error(
                    &v.span(),
                    format!("{path}: expected {}, found {}", e.what, describe(other)),
                    format!("for example `{key} = {}`", e.example),
                );
                None
            }
        }
    }

    /// A required string.
    pub fn string(&mut self, t: &mut Table, key: &'static str, e: Expect) -> Option<String> {
        let v = match self.take(t, key) {
            None => {
                self.missing(t, key, &e);
                None
            }
            Some(v) => self.as_string(t, key, v, &e),
        };
        self.note(t, key, v)
    }

    /// An optional string: `Some(None)` when absent, `None` when present but wrong.
    pub fn string_opt(
        &mut self,
        t: &mut Table,
        key: &'static str,
        e: Expect,
    ) -> Option<Option<String>> {
        let v = match self.take(t, key) {
            None => Some(None),
            Some(v) => self.as_string(t, key, v, &e).map(Some),
        };
        self.note(t, key, v)
    }

    fn as_string(
        &mut self,
        t: &Table,
        key: &str,
        v: &Spanned<DeValue>,
        e: &Expect,
    ) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(t, key, v, e);
                None
            }
        }
    }

    /// A required string that must be one of `choices`.
    pub fn choice(
        &mut self,
        t: &mut Table,
        key: &'static str,
        choices: &[&str],
        e: Expect,
    ) -> Option<String> {
        let s = self.string(t, key, e)?;
        self.check_choice(t, key, s, choices)
    }

    /// An optional string that must be one of `choices`; `default` when absent.
    pub fn choice_or(
        &mut self,
        t: &mut Table,
        key: &'static str,
        choices: &[&str],
        default: &str,
        e: Expect,
    ) -> Option<String> {
        match self.string_opt(t, key, e)? {
            None => Some(default.to_string()),
            Some(s) => self.check_choice(t, key, s, choices),
        }
    }

    fn check_choice(
        &mut self,
        t: &Table,
        key: &str,
        s: String,
        choices: &[&str],
    ) -> Option<String> {
        if choices.contains(&s.as_str()) {
            return Some(s);
        }
        self.fail(t.field_path(key));
        let span = t.lookup(key).map(|v| v.span()).unwrap_or(t.span.clone());
        let near = suggest(&s, choices)
            .map(|c| format!("did you mean \"{c}\"? "))
            .unwrap_or_default();
        self.error(
            &span,
            format!(
                "{}: \"{s}\" is not one of the accepted values",
                t.field_path(key)
            ),
            format!("{near}valid: {}", quoted_list(choices)),
        );
        None
    }

    /// An optional boolean; `default` when absent.
    pub fn boolean_or(
        &mut self,
        t: &mut Table,
        key: &'static str,
        default: bool,
        e: Expect,
    ) -> Option<bool> {
        match self.take(t, key) {
            None => Some(default),
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => Some(*b),
                _ => {
                    self.wrong_type(t, key, v, &e);
                    self.fail(t.field_path(key));
                    None
                }
            },
        }
    }

    /// A sub-table (`[a.b]` or inline); `None` when absent (reported if `required`) or wrong.
    pub fn table<'t, 'i>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
        required: bool,
        e: Expect,
    ) -> Option<Table<'t, 'i>> {
        match self.take(t, key) {
            None => {
                if required {
                    self.missing_section(t, key, &e);
                }
                self.fail(t.field_path(key));
                None
            }
            Some(v) => match v.get_ref() {
                DeValue::Table(inner) => Some(Table::new(t.field_path(key), v.span(), inner)),
                _ => {
                    self.wrong_type(t, key, v, &e);
                    self.fail(t.field_path(key));
                    None
                }
            },
        }
    }

    fn missing_section(&mut self, t: &Table, key: &str, e: &Expect) {
        let span = t.span.clone();
        self.error(
            &span,
            format!("missing section [{}] ({})", t.field_path(key), e.what),
            format!("add a [{}] table; {}", t.field_path(key), e.example),
        );
    }

    /// An array of tables (`[[x]]`); empty when absent. Each element comes with its path.
    pub fn tables<'t, 'i>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
        e: Expect,
    ) -> Vec<Table<'t, 'i>> {
        let Some(v) = self.take(t, key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(t, key, v, &e);
            self.fail(t.field_path(key));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", t.field_path(key));
            match item.get_ref() {
                DeValue::Table(inner) => {
                    self.record_span(path.clone(), item.span());
                    out.push(Table::new(path, item.span(), inner));
                }
                other => {
                    self.error(
                        &item.span(),
                        format!(
                            "{path}: expected a table ({}), found {}",
                            e.what,
                            describe(other)
                        ),
                        format!(
                            "write each entry as [[{}]] followed by its fields",
                            t.field_path(key)
                        ),
                    );
                    // The list is now incomplete: checks over the whole section are skipped.
                    self.fail(t.field_path(key));
                }
            }
        }
        out
    }

    /// A required array; each element is handed to `each` with its path and span. Elements
    /// that could not be read are left out (and recorded as failed); `None` when the array
    /// itself is missing or not an array.
    pub fn array<T>(
        &mut self,
        t: &mut Table,
        key: &'static str,
        e: Expect,
        mut each: impl FnMut(&mut Self, String, &Spanned<DeValue>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Some(v) = self.take(t, key) else {
            self.missing(t, key, &e);
            self.fail(t.field_path(key));
            return None;
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(t, key, v, &e);
            self.fail(t.field_path(key));
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", t.field_path(key));
            self.record_span(path.clone(), item.span());
            match each(self, path.clone(), item) {
                Some(x) => out.push(x),
                None => self.fail(path),
            }
        }
        Some(out)
    }

    /// Reports every key of the table that was never asked for, with a suggestion.
    pub fn finish(&mut self, t: Table) {
        for (k, _) in t.table.iter() {
            let name = k.get_ref().as_ref();
            if t.known.contains(&name) {
                continue;
            }
            let near = suggest(name, &t.known)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            let place = if t.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in {}", table_name(&t.path))
            };
            self.error(
                &k.span(),
                format!("unknown key `{name}` {place}"),
                format!("{near}valid keys: {}", t.known.join(", ")),
            );
        }
    }
}

/// How a table is named in messages: `[grid]`, `pv[1]`, or "the file" for the root.
fn table_name(path: &str) -> String {
    if path.is_empty() {
        "the file".into()
    } else if path.ends_with(']') {
        path.into()
    } else {
        format!("[{path}]")
    }
}

/// True when `path` is `outer` or lies inside it (`outer.x`, `outer[3]`).
pub(crate) fn within(path: &str, outer: &str) -> bool {
    match path.strip_prefix(outer) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

/// What kind of value a TOML value is, for "expected X, found Y".
pub(crate) fn describe(v: &DeValue) -> String {
    match v {
        DeValue::String(s) => format!("the string \"{}\"", truncate(s, 40)),
        DeValue::Integer(_) | DeValue::Float(_) => format!("the number {}", value_text(v)),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

fn value_text(v: &DeValue) -> String {
    match v {
        DeValue::Integer(i) => truncate(&i.to_string(), 40),
        DeValue::Float(f) => truncate(f.as_str(), 40),
        other => describe(other),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n).collect();
        format!("{cut}...")
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let keys = ["capacity_kwh", "max_charge_kw", "soc_min"];
        assert_eq!(suggest("capacity_kWh", &keys), Some("capacity_kwh"));
        assert_eq!(suggest("soc_mn", &keys), Some("soc_min"));
        assert_eq!(suggest("colour", &keys), None);
    }
}
