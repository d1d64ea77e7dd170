//! RFC 8785 JSON Canonicalization Scheme (JCS): the bytes a version-2 certificate's signature
//! covers, so any JCS implementation (Python `rfc8785`, Java, Go, JavaScript) reproduces them.
//!
//! * Objects: members sorted by their names compared as UTF-16 code units (RFC 8785 §3.2.3),
//!   no whitespace anywhere.
//! * Strings: JSON escapes of ECMAScript `JSON.stringify`: `\"`, `\\`, `\b \f \n \r \t`, other
//!   control characters as `\u00xx` (lower-case hex), everything else as UTF-8.
//! * Numbers: IEEE 754 doubles written as ECMAScript `Number.prototype.toString` does
//!   (ECMA-262 §6.1.6.1.20): the shortest digits that round-trip, `12` for 12.0, `1e+21`,
//!   `1e-7`, `0` for -0. Not finite numbers cannot occur in JSON and are refused.
//!
//! Tested against Python `rfc8785` in `tests/outside_peers.rs`.

use serde_json::Value;

/// The canonical text of a JSON value.
pub fn canonicalize(value: &Value) -> Result<String, String> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut String) -> Result<(), String> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(n) => {
            // Integers beyond 2^53 are not exact doubles; JCS writes every number as a double.
            let x = n.as_f64().ok_or("a JSON number that is not a double")?;
            out.push_str(&number(x)?);
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(&map[k], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A double as ECMAScript writes it.
pub fn number(x: f64) -> Result<String, String> {
    if !x.is_finite() {
        return Err(format!("{x} is not a JSON number"));
    }
    if x == 0.0 {
        return Ok("0".into());
    }
    let sign = if x < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the shortest digits that round-trip: "d.ddde±x".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').ok_or("float formatting")?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    // x = 0.d1d2...dk x 10^n
    let n = exp.parse::<i32>().map_err(|e| e.to_string())? + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let esign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{esign}{}", e.abs())
        } else {
            format!("{}.{}e{esign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    Ok(format!("{sign}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_ecmascript_writes_them() {
        // Examples of RFC 8785 Appendix B and ECMA-262.
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (12.0, "12"),
            (0.6361, "0.6361"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (-1.5e-7, "-1.5e-7"),
            (123.456e30, "1.23456e+32"),
            (4.5, "4.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (9007199254740992.0, "9007199254740992"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (333333333.3333333, "333333333.3333333"),
        ];
        for (x, want) in cases {
            assert_eq!(number(x).unwrap(), want, "{x:e}");
        }
        assert!(number(f64::NAN).is_err());
    }

    #[test]
    fn members_sort_by_utf16_and_nothing_is_spaced() {
        let v: Value = serde_json::from_str(
            r#"{"b": [1.0, {"z": null, "y": true}], "a": "x\u0001\n", "\ud83d\ude00": 1, "\ufb01": 2}"#,
        )
        .unwrap();
        // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB01 in UTF-16.
        assert_eq!(
            canonicalize(&v).unwrap(),
            "{\"a\":\"x\\u0001\\n\",\"b\":[1,{\"y\":true,\"z\":null}],\"😀\":1,\"ﬁ\":2}"
        );
    }
}
