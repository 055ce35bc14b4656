//! The newtypes as SQL parameters and columns, so store functions bind `&CustomerId` or
//! `&CallSid` directly and never unwrap them into raw integers and strings at a call site.
//!
//! Writing delegates to the inner value's encoding (`int8` for a customer id, text for the
//! rest). Reading validates again: a value in the database that no longer parses (written by
//! hand, or by a version with looser rules) is a column error, not a silently wrong type.

use std::error::Error;

use tokio_postgres::types::private::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::{AccountSid, CallSid, CallerNumber, CustomerId, PhoneNumber, StreamSid};

type SqlResult<T> = Result<T, Box<dyn Error + Sync + Send>>;

impl ToSql for CustomerId {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> SqlResult<IsNull> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for CustomerId {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> SqlResult<Self> {
        Ok(Self::new(i64::from_sql(ty, raw)?)?)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}

/// Text newtypes: bound as their text, read back through their own parser.
macro_rules! text_sql {
    ($($name:ident => $parse:path),+ $(,)?) => {$(
        impl ToSql for $name {
            fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> SqlResult<IsNull> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> SqlResult<Self> {
                Ok($parse(<&str as FromSql>::from_sql(ty, raw)?)?)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    )+};
}

text_sql! {
    PhoneNumber => PhoneNumber::parse,
    CallerNumber => CallerNumber::parse,
    CallSid => CallSid::parse,
    AccountSid => AccountSid::parse,
    StreamSid => StreamSid::parse,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded<T: ToSql>(value: &T, ty: &Type) -> Vec<u8> {
        let mut out = BytesMut::new();
        let null = value.to_sql_checked(ty, &mut out).expect("encodes");
        assert!(matches!(null, IsNull::No));
        out.to_vec()
    }

    #[test]
    fn customer_ids_travel_as_int8_and_are_checked_on_the_way_back() {
        let id = CustomerId::new(42).unwrap();
        let raw = encoded(&id, &Type::INT8);
        assert_eq!(raw, 42_i64.to_be_bytes());
        assert_eq!(CustomerId::from_sql(&Type::INT8, &raw).unwrap(), id);
        // The column type is checked before anything is sent.
        let mut out = BytesMut::new();
        assert!(id.to_sql_checked(&Type::TEXT, &mut out).is_err());
        // A stored zero is not a customer.
        let zero = 0_i64.to_be_bytes();
        assert!(CustomerId::from_sql(&Type::INT8, &zero).is_err());
    }

    #[test]
    fn text_ids_travel_as_their_text_and_are_parsed_on_the_way_back() {
        let sid = CallSid::parse("CA0123456789abcdef0123456789abcdef").unwrap();
        let raw = encoded(&sid, &Type::TEXT);
        assert_eq!(raw, sid.as_str().as_bytes());
        assert_eq!(CallSid::from_sql(&Type::TEXT, &raw).unwrap(), sid);
        assert!(CallSid::from_sql(&Type::TEXT, b"AC0123456789abcdef0123456789abcdef").is_err());
        let caller = CallerNumber::parse("+15555550100").unwrap();
        let raw = encoded(&caller, &Type::VARCHAR);
        assert_eq!(
            CallerNumber::from_sql(&Type::VARCHAR, &raw).unwrap(),
            caller
        );
        assert!(CallerNumber::from_sql(&Type::TEXT, b"anonymous").is_err());
        assert!(PhoneNumber::from_sql(&Type::TEXT, b"12").is_err());
    }
}
