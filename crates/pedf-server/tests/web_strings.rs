//! Every string the dashboard shows exists in both languages: the Chinese and English tables
//! of web/app.js hold the same keys, and every key the page or the script names is in them.

use std::collections::BTreeSet;

const APP: &str = include_str!("../web/app.js");
const HTML: &str = include_str!("../web/index.html");

/// The keys of one language's table (`'key': '...'` lines between `<lang>: {` and `},`).
fn table(lang: &str) -> BTreeSet<String> {
    let start = APP
        .find(&format!("\n  {lang}: {{"))
        .unwrap_or_else(|| panic!("no {lang} table in app.js"));
    let body = &APP[start..];
    let end = body.find("\n  },").expect("the table's end");
    let mut keys = BTreeSet::new();
    for piece in body[..end].split(", '").flat_map(|p| p.split("\n    '")) {
        if let Some((key, _)) = piece.trim_start_matches('\'').split_once("': ") {
            if !key.contains(' ') && !key.is_empty() {
                keys.insert(key.to_string());
            }
        }
    }
    keys
}

/// What follows each `marker` (not inside a longer name) up to the closing `quote`.
fn named(text: &str, marker: &str, quote: char) -> BTreeSet<String> {
    text.match_indices(marker)
        .filter(|(i, _)| {
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        })
        .filter_map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            rest.find(quote).map(|e| rest[..e].to_string())
        })
        .collect()
}

#[test]
fn every_dashboard_string_is_in_both_languages() {
    let (zh, en) = (table("zh"), table("en"));
    assert!(zh.len() > 100, "{} keys read from the zh table", zh.len());
    let only_zh: Vec<_> = zh.difference(&en).collect();
    let only_en: Vec<_> = en.difference(&zh).collect();
    assert!(
        only_zh.is_empty() && only_en.is_empty(),
        "only in Chinese: {only_zh:?}; only in English: {only_en:?}"
    );
    let mut used = named(HTML, "data-i18n=\"", '"');
    used.extend(named(HTML, "data-i18n-placeholder=\"", '"'));
    // Literal keys in the script (`t('key')`); keys built from a prefix are covered by the
    // tables' parity above.
    used.extend(
        named(APP, "t('", '\'')
            .into_iter()
            .filter(|k| !k.ends_with('.')),
    );
    let missing: Vec<_> = used.iter().filter(|k| !zh.contains(*k)).collect();
    assert!(missing.is_empty(), "named but not translated: {missing:?}");
}
