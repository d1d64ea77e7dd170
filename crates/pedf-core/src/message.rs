//! What pedf says to a person, in both of the product's languages: English and Chinese.
//!
//! An answer the dashboard shows (an API error, a note) is a [`Message`]: it cannot be made
//! without both texts, so no error reaches a Chinese page in English only. Where a message
//! carries a detail from elsewhere (a file's diagnostic, a parser's words), the Chinese text
//! frames it in Chinese and keeps the detail as it was said.

use std::fmt;

use serde::Serialize;

/// A language the product speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English: the API's default, and the command line's.
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The language an `Accept-Language` header prefers of the two: the one with the highest
    /// weight (the first listed on a tie); English when neither is named.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut fields = part.split(';');
            let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = fields
                .filter_map(|f| f.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }
}

/// One thing said, in English and in Chinese.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// English.
    pub en: String,
    /// Simplified Chinese.
    pub zh: String,
}

impl Message {
    /// A message in both languages.
    pub fn new(en: impl Into<String>, zh: impl Into<String>) -> Message {
        Message {
            en: en.into(),
            zh: zh.into(),
        }
    }

    /// A detail from elsewhere (a parser's or a file's words), framed in each language:
    /// `en_frame: detail` and `zh_frame：detail`.
    pub fn framed(en_frame: &str, zh_frame: &str, detail: impl fmt::Display) -> Message {
        Message::new(
            format!("{en_frame}: {detail}"),
            format!("{zh_frame}：{detail}"),
        )
    }

    /// The text in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Zh => &self.zh,
        }
    }
}

/// The English text (the command line's and the logs' language).
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.en)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_of_the_two_languages_is_taken_from_accept_language() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("en;q=0.5, zh-Hans"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("fr-FR, de"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=0"), Lang::En);
        assert_eq!(Lang::from_accept_language("ZH"), Lang::Zh);
    }

    #[test]
    fn a_message_is_english_on_the_command_line_and_chosen_on_a_page() {
        let m = Message::framed("planning failed", "计划失败", "no PV forecast");
        assert_eq!(m.to_string(), "planning failed: no PV forecast");
        assert_eq!(m.get(Lang::Zh), "计划失败：no PV forecast");
    }
}
