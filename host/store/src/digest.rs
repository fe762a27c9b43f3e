//! SHA-256 digests of component bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::StoreError;

/// The SHA-256 digest of a component's bytes: its identity in the store.
///
/// Displayed, serialized and parsed as `sha256:<64 lowercase hex>`;
/// [`Digest::parse`] also accepts the bare hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The prefix of the textual form.
    pub const PREFIX: &'static str = "sha256:";

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<hex>` or `<hex>` (64 hex characters, either case).
    pub fn parse(s: &str) -> Result<Digest, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidDigest {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let hex_part = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        if hex_part.len() != 64 {
            return Err(invalid("expected 64 hex characters"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| invalid("not hexadecimal"))?;
        Ok(Digest(bytes))
    }

    /// The 64 lowercase hex characters, without prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The file-name stem used in the store: `sha256-<hex>`.
    pub fn file_stem(&self) -> String {
        format!("sha256-{}", self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Digest, StoreError> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_and_text_forms() {
        let d = Digest::of(b"");
        assert_eq!(d.hex(), EMPTY);
        assert_eq!(d.to_string(), format!("sha256:{EMPTY}"));
        assert_eq!(format!("{d:?}"), format!("Digest(sha256:{EMPTY})"));
        assert_eq!(d.file_stem(), format!("sha256-{EMPTY}"));
        assert_eq!(Digest::parse(EMPTY).unwrap(), d);
        assert_eq!(Digest::parse(&format!("sha256:{EMPTY}")).unwrap(), d);
        assert_eq!(Digest::parse(&EMPTY.to_uppercase()).unwrap(), d);
        assert_eq!(format!("sha256:{EMPTY}").parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn bad_digests_are_refused() {
        for bad in [
            "",
            "sha256:",
            "abc",
            &EMPTY[1..],
            &format!("{EMPTY}0"),
            &"g".repeat(64),
            &format!("md5:{EMPTY}"),
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidDigest { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn serde_uses_the_prefixed_string() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{}\"", d.hex()));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
