//! `google.rpc.Status` as Mixer passes it around: a code (any integer, as adapters may return
//! codes outside gRPC's list) and a message; the code names 1.4 printed and the HTTP statuses it
//! mapped them to.

/// A status: code and message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub code: i32,
    pub message: String,
}

pub const OK: i32 = 0;
pub const CANCELLED: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const INVALID_ARGUMENT: i32 = 3;
pub const DEADLINE_EXCEEDED: i32 = 4;
pub const NOT_FOUND: i32 = 5;
pub const ALREADY_EXISTS: i32 = 6;
pub const PERMISSION_DENIED: i32 = 7;
pub const RESOURCE_EXHAUSTED: i32 = 8;
pub const FAILED_PRECONDITION: i32 = 9;
pub const ABORTED: i32 = 10;
pub const OUT_OF_RANGE: i32 = 11;
pub const UNIMPLEMENTED: i32 = 12;
pub const INTERNAL: i32 = 13;
pub const UNAVAILABLE: i32 = 14;
pub const DATA_LOSS: i32 = 15;
pub const UNAUTHENTICATED: i32 = 16;

impl Status {
    pub fn ok() -> Status {
        Status::default()
    }

    pub fn new(code: i32, message: impl Into<String>) -> Status {
        Status { code, message: message.into() }
    }

    pub fn is_ok(&self) -> bool {
        self.code == OK
    }

    /// `PERMISSION_DENIED:message` (or just the name with no message), the body 1.4's proxies
    /// answered a refused request with.
    pub fn body(&self) -> String {
        if self.message.is_empty() {
            code_name(self.code).to_string()
        } else {
            format!("{}:{}", code_name(self.code), self.message)
        }
    }

    pub fn to_proto(&self) -> istio_api::pb::google::rpc::Status {
        istio_api::pb::google::rpc::Status { code: self.code, message: self.message.clone(), details: Vec::new() }
    }

    pub fn from_proto(status: &istio_api::pb::google::rpc::Status) -> Status {
        Status { code: status.code, message: status.message.clone() }
    }
}

/// gRPC's name of a code (`Code(12345678)` for one outside the list).
pub fn code_name(code: i32) -> String {
    let name = match code {
        OK => "OK",
        CANCELLED => "CANCELLED",
        UNKNOWN => "UNKNOWN",
        INVALID_ARGUMENT => "INVALID_ARGUMENT",
        DEADLINE_EXCEEDED => "DEADLINE_EXCEEDED",
        NOT_FOUND => "NOT_FOUND",
        ALREADY_EXISTS => "ALREADY_EXISTS",
        PERMISSION_DENIED => "PERMISSION_DENIED",
        RESOURCE_EXHAUSTED => "RESOURCE_EXHAUSTED",
        FAILED_PRECONDITION => "FAILED_PRECONDITION",
        ABORTED => "ABORTED",
        OUT_OF_RANGE => "OUT_OF_RANGE",
        UNIMPLEMENTED => "UNIMPLEMENTED",
        INTERNAL => "INTERNAL",
        UNAVAILABLE => "UNAVAILABLE",
        DATA_LOSS => "DATA_LOSS",
        UNAUTHENTICATED => "UNAUTHENTICATED",
        other => return format!("Code({other})"),
    };
    name.to_string()
}

/// The HTTP status a proxy answers a refused check with (1.4's proxy mapping).
pub fn http_status(code: i32) -> u16 {
    match code {
        OK => 200,
        CANCELLED => 499,
        INVALID_ARGUMENT | FAILED_PRECONDITION | OUT_OF_RANGE => 400,
        DEADLINE_EXCEEDED => 504,
        NOT_FOUND => 404,
        ALREADY_EXISTS | ABORTED => 409,
        PERMISSION_DENIED => 403,
        RESOURCE_EXHAUSTED => 429,
        UNIMPLEMENTED => 501,
        UNAVAILABLE => 503,
        UNAUTHENTICATED => 401,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_as_1_4s() {
        assert_eq!(
            Status::new(PERMISSION_DENIED, "denyreviewsv3handler.default:Not allowed").body(),
            "PERMISSION_DENIED:denyreviewsv3handler.default:Not allowed"
        );
        assert_eq!(Status::new(UNAVAILABLE, "").body(), "UNAVAILABLE");
        assert_eq!(code_name(12_345_678), "Code(12345678)");
        assert_eq!(http_status(RESOURCE_EXHAUSTED), 429);
        assert_eq!(http_status(FAILED_PRECONDITION), 400);
    }
}
