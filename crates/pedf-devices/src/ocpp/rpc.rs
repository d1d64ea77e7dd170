//! OCPP-J's remote procedure calls over a WebSocket text frame (OCPP-J 1.6 section 4, OCPP
//! 2.0.1 part 4 section 4): a CALL `[2, id, action, payload]`, its CALLRESULT
//! `[3, id, payload]` or CALLERROR `[4, id, code, description, details]`.
//!
//! A frame that cannot be read is answered with the CALLERROR the version names for it (1.6
//! says `FormationViolation` where 2.0.1 says `FormatViolation`, and spells
//! `OccurenceConstraintViolation` with one r); a payload that does not fit its action's
//! message is classified by what is wrong with it, as the official schemas would find it:
//! a required field missing (`ProtocolError`: the payload is incomplete), a field of the wrong
//! type (`TypeConstraintViolation`), a field the message does not have (the format error), a
//! value outside its enumeration (`PropertyConstraintViolation`).

use serde_json::Value;

/// The OCPP version a connection speaks (its WebSocket subprotocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// OCPP 1.6 JSON (`ocpp1.6`).
    V16,
    /// OCPP 2.0.1 (`ocpp2.0.1`).
    V201,
}

impl Version {
    /// The WebSocket subprotocol.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Version::V16 => "ocpp1.6",
            Version::V201 => "ocpp2.0.1",
        }
    }

    /// The version of a subprotocol, if pedf speaks it.
    pub fn of_subprotocol(s: &str) -> Option<Version> {
        match s.trim() {
            "ocpp1.6" => Some(Version::V16),
            "ocpp2.0.1" => Some(Version::V201),
            _ => None,
        }
    }
}

/// What a CALLERROR says went wrong, by the version's own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The action is not known.
    NotImplemented,
    /// The action is known but not supported here.
    NotSupported,
    /// The receiver failed while handling a valid call.
    InternalError,
    /// The payload is incomplete (a required field is missing), or the frame is not a call.
    ProtocolError,
    /// The call was refused for security reasons.
    SecurityError,
    /// The payload or frame is not well formed (not JSON, a field the message lacks).
    Format,
    /// A field holds a value its enumeration or range does not allow.
    PropertyConstraint,
    /// A field occurs more or fewer times than allowed.
    OccurrenceConstraint,
    /// A field has the wrong type.
    TypeConstraint,
    /// Anything else.
    Generic,
}

impl ErrorKind {
    /// The error code as `version` spells it.
    pub fn code(self, version: Version) -> &'static str {
        match (self, version) {
            (ErrorKind::NotImplemented, _) => "NotImplemented",
            (ErrorKind::NotSupported, _) => "NotSupported",
            (ErrorKind::InternalError, _) => "InternalError",
            (ErrorKind::ProtocolError, _) => "ProtocolError",
            (ErrorKind::SecurityError, _) => "SecurityError",
            (ErrorKind::Format, Version::V16) => "FormationViolation",
            (ErrorKind::Format, Version::V201) => "FormatViolation",
            (ErrorKind::PropertyConstraint, _) => "PropertyConstraintViolation",
            (ErrorKind::OccurrenceConstraint, Version::V16) => "OccurenceConstraintViolation",
            (ErrorKind::OccurrenceConstraint, Version::V201) => "OccurrenceConstraintViolation",
            (ErrorKind::TypeConstraint, _) => "TypeConstraintViolation",
            (ErrorKind::Generic, _) => "GenericError",
        }
    }
}

/// A CALLERROR to send: its kind and what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// The kind.
    pub kind: ErrorKind,
    /// What was wrong, for the charger's log.
    pub description: String,
}

impl CallError {
    /// An error of `kind` saying `description`.
    pub fn new(kind: ErrorKind, description: impl Into<String>) -> CallError {
        CallError {
            kind,
            description: description.into(),
        }
    }

    /// What is wrong with a payload serde could not read as the action's message.
    pub fn of_payload(action: &str, e: &serde_json::Error) -> CallError {
        let m = e.to_string();
        let kind = if m.starts_with("missing field") {
            ErrorKind::ProtocolError
        } else if m.starts_with("invalid type") {
            ErrorKind::TypeConstraint
        } else if m.starts_with("unknown field") {
            ErrorKind::Format
        } else if m.starts_with("unknown variant") || m.starts_with("invalid value") {
            ErrorKind::PropertyConstraint
        } else if m.starts_with("invalid length") {
            ErrorKind::OccurrenceConstraint
        } else {
            ErrorKind::Format
        };
        CallError::new(kind, format!("{action}: {m}"))
    }
}

/// One OCPP-J frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A request.
    Call {
        /// Its unique id on this connection.
        id: String,
        /// The action (`BootNotification`, ...).
        action: String,
        /// The request's payload.
        payload: Value,
    },
    /// The answer to a call.
    Result {
        /// The call's id.
        id: String,
        /// The answer's payload.
        payload: Value,
    },
    /// A call refused or failed.
    Error {
        /// The call's id.
        id: String,
        /// The error code as sent.
        code: String,
        /// Its description.
        description: String,
    },
}

/// A frame that could not be read: the CALLERROR to answer it with, and the id it had (a
/// frame without an id is answered with the id `-1`, as there is none to name).
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// The id, when the frame had one.
    pub id: Option<String>,
    /// What to answer.
    pub error: CallError,
}

impl Frame {
    /// Reads a text frame.
    pub fn parse(text: &str) -> Result<Frame, Unreadable> {
        let bad = |id: Option<String>, kind, why: String| Unreadable {
            id,
            error: CallError::new(kind, why),
        };
        let v: Value = serde_json::from_str(text)
            .map_err(|e| bad(None, ErrorKind::Format, format!("not JSON: {e}")))?;
        let Value::Array(items) = v else {
            return Err(bad(
                None,
                ErrorKind::ProtocolError,
                "a frame is a JSON array [type, id, ...]".into(),
            ));
        };
        let id = items.get(1).and_then(Value::as_str).map(str::to_string);
        let Some(id_text) = id.clone() else {
            return Err(bad(
                None,
                ErrorKind::ProtocolError,
                "the frame has no message id (a string, second)".into(),
            ));
        };
        if id_text.len() > 36 {
            return Err(bad(
                id,
                ErrorKind::Format,
                "the message id is longer than 36 characters".into(),
            ));
        }
        match items.first().and_then(Value::as_u64) {
            Some(2) => match (
                items.get(2).and_then(Value::as_str),
                items.get(3),
                items.len(),
            ) {
                (Some(action), Some(payload @ Value::Object(_)), 4) => Ok(Frame::Call {
                    id: id_text,
                    action: action.to_string(),
                    payload: payload.clone(),
                }),
                _ => Err(bad(
                    id,
                    ErrorKind::ProtocolError,
                    "a CALL is [2, id, action, {payload}]".into(),
                )),
            },
            Some(3) => match (items.get(2), items.len()) {
                (Some(payload @ Value::Object(_)), 3) => Ok(Frame::Result {
                    id: id_text,
                    payload: payload.clone(),
                }),
                _ => Err(bad(
                    id,
                    ErrorKind::ProtocolError,
                    "a CALLRESULT is [3, id, {payload}]".into(),
                )),
            },
            Some(4) => Ok(Frame::Error {
                id: id_text,
                code: items
                    .get(2)
                    .and_then(Value::as_str)
                    .unwrap_or("GenericError")
                    .to_string(),
                description: items
                    .get(3)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => Err(bad(
                id,
                ErrorKind::PropertyConstraint,
                "the message type is not 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR)".into(),
            )),
        }
    }

    /// The frame's text.
    pub fn text(&self) -> String {
        match self {
            Frame::Call {
                id,
                action,
                payload,
            } => serde_json::json!([2, id, action, payload]),
            Frame::Result { id, payload } => serde_json::json!([3, id, payload]),
            Frame::Error {
                id,
                code,
                description,
            } => serde_json::json!([4, id, code, description, {}]),
        }
        .to_string()
    }

    /// The CALLERROR frame answering call `id` with `e`, in `version`'s codes.
    pub fn error(id: &str, e: &CallError, version: Version) -> Frame {
        Frame::Error {
            id: id.to_string(),
            code: e.kind.code(version).to_string(),
            description: e.description.chars().take(255).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_and_written() {
        let f = Frame::parse(
            r#"[2,"19223201","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#,
        )
        .unwrap();
        assert!(matches!(&f, Frame::Call { action, .. } if action == "BootNotification"));
        assert_eq!(Frame::parse(&f.text()).unwrap(), f);
        let r = Frame::parse(r#"[3,"1",{"status":"Accepted"}]"#).unwrap();
        assert!(matches!(r, Frame::Result { .. }));
        let e = Frame::parse(r#"[4,"1","NotSupported","no",{}]"#).unwrap();
        assert!(matches!(e, Frame::Error { code, .. } if code == "NotSupported"));
    }

    #[test]
    fn an_unreadable_frame_says_what_is_wrong_in_the_versions_words() {
        let e = Frame::parse("[2, \"1\", \"Heartbeat\"").unwrap_err();
        assert_eq!(e.id, None);
        assert_eq!(e.error.kind.code(Version::V16), "FormationViolation");
        assert_eq!(e.error.kind.code(Version::V201), "FormatViolation");
        let e = Frame::parse(r#"{"a":1}"#).unwrap_err();
        assert_eq!(e.error.kind, ErrorKind::ProtocolError);
        let e = Frame::parse(r#"[2,"7","Heartbeat"]"#).unwrap_err();
        assert_eq!(
            (e.id.as_deref(), e.error.kind),
            (Some("7"), ErrorKind::ProtocolError)
        );
        let e = Frame::parse(r#"[9,"7",{}]"#).unwrap_err();
        assert_eq!(e.error.kind, ErrorKind::PropertyConstraint);
        let long = "x".repeat(37);
        let e = Frame::parse(&format!(r#"[2,"{long}","Heartbeat",{{}}]"#)).unwrap_err();
        assert_eq!(e.error.kind, ErrorKind::Format);
    }

    #[test]
    fn a_payload_error_is_classified_as_the_schemas_would() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct M {
            a: u32,
            s: Option<S>,
        }
        #[derive(serde::Deserialize, Debug)]
        enum S {
            On,
        }
        let kind =
            |t: &str| CallError::of_payload("X", &serde_json::from_str::<M>(t).unwrap_err()).kind;
        assert_eq!(kind(r#"{}"#), ErrorKind::ProtocolError);
        assert_eq!(kind(r#"{"a":"1"}"#), ErrorKind::TypeConstraint);
        assert_eq!(kind(r#"{"a":1,"b":2}"#), ErrorKind::Format);
        assert_eq!(kind(r#"{"a":1,"s":"Off"}"#), ErrorKind::PropertyConstraint);
        assert_eq!(
            ErrorKind::OccurrenceConstraint.code(Version::V16),
            "OccurenceConstraintViolation"
        );
    }
}
