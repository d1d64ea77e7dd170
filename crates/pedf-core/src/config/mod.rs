//! Reading configuration files into domain values, reporting **every** problem with its file,
//! line and column and a hint of what would be valid.
//!
//! The reader never stops at the first problem and never panics: syntax errors are recovered
//! where the TOML parser can, then every section is read, type-checked and range-checked on
//! its own, and finally the checks that span sections run when all sections were readable.

mod park_file;
mod reader;

pub use park_file::{load_park, PARK_SECTIONS};

/// The candidate closest to `word`, if close enough to be a typo (for "did you mean").
pub fn suggest_public<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    reader::suggest(word, candidates)
}

use std::fmt;
use std::ops::Range;

pub use crate::validate::Severity;

/// One located problem in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What would be valid.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n    hint: {h}")?;
        }
        Ok(())
    }
}

/// The result of reading a file: the value when it is usable, and every diagnostic found.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The value, present only when there were no errors (warnings allowed).
    pub value: Option<T>,
    /// Errors and warnings in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl<T> Loaded<T> {
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Turns byte offsets into line and column numbers.
#[derive(Debug, Clone)]
pub struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    /// Indexes the line starts of a text.
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, line_starts }
    }

    /// 1-based line and character column of a byte offset (clamped to the text).
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        // Offsets from the parser may fall inside a multi-byte character; step back to one.
        let mut end = offset;
        while end > start && !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let column = self.text[start..end].chars().count() + 1;
        (line + 1, column)
    }

    /// Location of the start of a span.
    pub fn locate_span(&self, span: &Range<usize>) -> (usize, usize) {
        self.locate(span.start)
    }
}

/// Location of the first invalid UTF-8 byte, for files that are not text.
pub(crate) fn decode_utf8<'b>(file: &str, bytes: &'b [u8]) -> Result<&'b str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = e.valid_up_to();
        // The valid prefix is text, so it can be indexed for a line and column.
        let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
        let (line, column) = SourceMap::new(prefix).locate(good);
        Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            line,
            column,
            message: format!(
                "the file is not UTF-8 text: invalid byte 0x{:02X}",
                bytes[good]
            ),
            hint: Some(
                "save the file as UTF-8 (Chinese names are fine in UTF-8, not in GBK)".into(),
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let text = "a = 1\n名称 = \"x\"\n\nlast";
        let map = SourceMap::new(text);
        assert_eq!(map.locate(0), (1, 1));
        assert_eq!(map.locate(4), (1, 5));
        let eq = text.find('=').unwrap();
        let second_eq = text[eq + 1..].find('=').unwrap() + eq + 1;
        assert_eq!(map.locate(second_eq), (2, 4));
        assert_eq!(map.locate(text.len()), (4, 5));
        assert_eq!(map.locate(usize::MAX), (4, 5));
    }

    #[test]
    fn non_utf8_is_located() {
        let d = decode_utf8("f.toml", b"a = 1\nb = \"\xff\"\n").unwrap_err();
        assert_eq!((d.line, d.column), (2, 6));
        assert!(d.message.contains("0xFF"));
    }
}
