//! Cache keys: a stable digest of the key arguments, and the Redis key layout
//! `{prefix}:{service}:{function}:{fingerprint}:{digest}`.

use std::fmt;

use serde::Serialize;
use xxhash_rust::{const_xxh3, xxh3};

use crate::error::CodecError;

/// Key arguments up to this many encoded bytes are digested without touching
/// the heap.
const STACK_KEY_BYTES: usize = 96;

/// A 128-bit digest of the postcard encoding of a call's key arguments.
///
/// XXH3-128 is specified and platform-independent and postcard's encoding is
/// a stable format, so the same arguments give the same digest on every build,
/// platform and Rust version (pinned by a golden-value test). `HashMap`s must
/// not be key arguments: their iteration order, and so their encoding, is
/// random.
///
/// ```
/// use acgs_cache_core::KeyDigest;
/// // The digest of a call's key arguments: stable across builds and platforms.
/// let a = KeyDigest::of(&(7u64, "alice")).unwrap();
/// assert_eq!(a, KeyDigest::of(&(7u64, "alice")).unwrap());
/// assert_ne!(a, KeyDigest::of(&(7u64, "bob")).unwrap());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyDigest(pub u128);

impl KeyDigest {
    /// Digests `args` (usually a tuple of references to the key arguments).
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] when an argument's `Serialize` implementation fails.
    ///
    /// ```
    /// use acgs_cache_core::KeyDigest;
    /// let digest = KeyDigest::of(&(7u64, "alice")).unwrap();
    /// assert_eq!(digest, KeyDigest::of(&(7u64, "alice")).unwrap());
    /// ```
    pub fn of<T: Serialize + ?Sized>(args: &T) -> Result<Self, CodecError> {
        let mut stack = [0u8; STACK_KEY_BYTES];
        match postcard::to_slice(args, &mut stack) {
            Ok(bytes) => Ok(KeyDigest(xxh3::xxh3_128(bytes))),
            Err(postcard::Error::SerializeBufferFull) => postcard::to_allocvec(args)
                .map(|bytes| KeyDigest(xxh3::xxh3_128(&bytes)))
                .map_err(|e| CodecError::Encode(e.to_string())),
            Err(e) => Err(CodecError::Encode(e.to_string())),
        }
    }

    /// 64 well-mixed bits of the digest, for jitter and sharding.
    ///
    /// ```
    /// use acgs_cache_core::KeyDigest;
    /// let digest = KeyDigest::of(&7u64).unwrap();
    /// assert_eq!(digest.low64(), digest.0 as u64); // what the envelope binds
    /// ```
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the low half of the digest, on purpose"
    )]
    pub fn low64(self) -> u64 {
        self.0 as u64
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({:032x})", self.0)
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A value that can enter a cache key.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
    label = "this argument is hashed into the cache key",
    note = "leave it out of the key with `#[cached(skip(<argument>))]`, or give the key yourself with `key = <expr>`"
)]
pub trait KeyArg: Serialize {}

impl<T: Serialize + ?Sized> KeyArg for T {}

/// A receiver that can enter a cache key.
#[diagnostic::on_unimplemented(
    message = "the receiver `{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
    label = "`self` is hashed into the cache key",
    note = "a service struct holding connections is usually left out of the key with `#[cached(skip(self))]` (every receiver then shares entries); or derive `Serialize` so each receiver has its own"
)]
pub trait ReceiverKey: Serialize {}

impl<T: Serialize + ?Sized> ReceiverKey for T {}

/// Digests key arguments one at a time, as the `#[cached]` expansion does.
///
/// postcard encodes a tuple as the concatenation of its elements, so
/// `k.arg(&a); k.arg(&b); k.finish()` equals `KeyDigest::of(&(a, b))`;
/// taking arguments one by one lets the compiler report a non-serializable
/// argument once, at that argument. The builder is filled in place (no
/// by-value chaining): it holds a stack buffer that would otherwise be copied
/// at every step of every call.
#[derive(Debug)]
pub struct KeyBuilder {
    stack: [u8; STACK_KEY_BYTES],
    len: usize,
    heap: Option<Vec<u8>>,
    failed: Option<CodecError>,
}

impl Default for KeyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyBuilder {
    /// An empty key.
    #[must_use]
    #[inline]
    pub fn new() -> Self {
        KeyBuilder {
            stack: [0; STACK_KEY_BYTES],
            len: 0,
            heap: None,
            failed: None,
        }
    }

    /// Appends one key argument.
    #[inline]
    pub fn arg<T: KeyArg + ?Sized>(&mut self, value: &T) -> &mut Self {
        if self.failed.is_some() {
            return self;
        }
        if let Some(heap) = self.heap.take() {
            match postcard::to_extend(value, heap) {
                Ok(heap) => self.heap = Some(heap),
                Err(e) => self.failed = Some(CodecError::Encode(e.to_string())),
            }
            return self;
        }
        match postcard::to_slice(value, &mut self.stack[self.len..]) {
            Ok(written) => self.len += written.len(),
            Err(postcard::Error::SerializeBufferFull) => {
                let heap = self.stack[..self.len].to_vec();
                match postcard::to_extend(value, heap) {
                    Ok(heap) => self.heap = Some(heap),
                    Err(e) => self.failed = Some(CodecError::Encode(e.to_string())),
                }
            }
            Err(e) => self.failed = Some(CodecError::Encode(e.to_string())),
        }
        self
    }

    /// Appends the receiver (`self`) as a key argument.
    #[inline]
    pub fn receiver<T: ReceiverKey + ?Sized>(&mut self, value: &T) -> &mut Self {
        self.arg(value)
    }

    /// The digest of everything appended.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] when an argument failed to serialize.
    #[inline]
    pub fn finish(&self) -> Result<KeyDigest, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let bytes = match &self.heap {
            Some(heap) => heap.as_slice(),
            None => &self.stack[..self.len],
        };
        Ok(KeyDigest(xxh3::xxh3_128(bytes)))
    }
}

/// A cached function's schema fingerprint, computed at compile time from its
/// module path, its signature as written and the attribute's `version`.
/// Changing the return type, the key arguments or the version moves the
/// function to a fresh key space, so old entries are never decoded as the new
/// type.
///
/// ```
/// use acgs_cache_core::fingerprint;
/// // Computed at compile time by `#[cached]` from where and how a function is written.
/// const A: u64 = fingerprint("app::rules", "count(u32)->u64", 0);
/// assert_ne!(A, fingerprint("app::rules", "count(u32)->u64", 1)); // `version` bumped
/// ```
#[must_use]
pub const fn fingerprint(module_path: &str, signature: &str, version: u32) -> u64 {
    let module = const_xxh3::xxh3_64(module_path.as_bytes());
    const_xxh3::xxh3_64_with_seed(
        signature.as_bytes(),
        module ^ (version as u64).rotate_left(32),
    )
}

/// The part of a function's L2 keys that all its entries share.
pub(crate) fn redis_key_prefix(
    prefix: &str,
    service: &str,
    function: &str,
    fingerprint: u64,
) -> String {
    format!("{prefix}:{service}:{function}:{fingerprint:016x}:")
}

/// One entry's L2 key: its function's key prefix and the digest in hex.
pub(crate) fn redis_key(key_prefix: &str, digest: KeyDigest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Formatting machinery (`{:032x}`) was a visible share of an L2 call.
    let mut hex = [0u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.0.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    let mut key = String::with_capacity(key_prefix.len() + hex.len());
    key.push_str(key_prefix);
    // Only ASCII hex digits were written: the conversion cannot fail.
    key.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    key
}

/// `text` as a literal inside a `SCAN MATCH` pattern: Redis's glob
/// characters escaped, so a prefix such as `acg?` matches only itself.
#[cfg(feature = "redis")] // `SCAN` patterns are L2's
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn digest_is_a_golden_value() {
        // Pinned: if this changes, every deployed cache key changes with it.
        let d = KeyDigest::of(&(&42u64, &"alice")).unwrap();
        assert_eq!(d.to_string(), GOLDEN_42_ALICE);
        let unit = KeyDigest::of(&()).unwrap();
        assert_eq!(unit.to_string(), GOLDEN_UNIT);
    }

    // Cross-checked with an independent XXH3 implementation (Python `xxhash`)
    // over the postcard bytes [42, 5, b'a', b'l', b'i', b'c', b'e'] and over b"".
    #[test]
    fn redis_key_ends_with_the_digest_in_hex() {
        let d = KeyDigest::of(&(&42u64, &"alice")).unwrap();
        let prefix = redis_key_prefix("acgs", "svc", "f", 0xab);
        assert_eq!(prefix, "acgs:svc:f:00000000000000ab:");
        assert_eq!(redis_key(&prefix, d), format!("{prefix}{GOLDEN_42_ALICE}"));
    }

    const GOLDEN_42_ALICE: &str = "5514734bbf207ef81579318b2b87f405";
    const GOLDEN_UNIT: &str = "99aa06d3014798d86001c324468d497f";

    /// What the builder must equal is the one-shot XXH3-128 of the whole
    /// postcard encoding (the format every deployed key was made with), on
    /// the stack and past it, argument by argument or as one tuple.
    #[test]
    fn the_builder_digests_the_whole_encoding_on_stack_and_heap() {
        let around_the_stack = [
            0,
            1,
            15,
            16,
            17,
            STACK_KEY_BYTES - 7,
            STACK_KEY_BYTES - 6,
            STACK_KEY_BYTES - 5,
            STACK_KEY_BYTES,
            240,
            241,
            1024,
            5000,
        ];
        for len in around_the_stack {
            let text = "y".repeat(len);
            let args = (7u8, &text, 9u32);
            let encoded = postcard::to_allocvec(&args).unwrap();
            let one_shot = KeyDigest(xxh3::xxh3_128(&encoded));
            assert_eq!(KeyDigest::of(&args).unwrap(), one_shot, "{len} bytes");
            let built = KeyBuilder::new()
                .arg(&7u8)
                .arg(&text)
                .arg(&9u32)
                .finish()
                .unwrap();
            assert_eq!(built, one_shot, "{len} bytes, one argument at a time");
        }
        assert_eq!(
            KeyBuilder::new().finish().unwrap(),
            KeyDigest::of(&()).unwrap()
        );
    }

    /// A long key, pinned like the short ones (it spills to the heap).
    #[test]
    fn a_long_key_is_a_golden_value() {
        let text = "governance".repeat(100);
        let d = KeyDigest::of(&(&42u64, &text)).unwrap();
        assert_eq!(d.to_string(), GOLDEN_42_LONG);
    }

    const GOLDEN_42_LONG: &str = "6826a9a9f89ef4ddbcf290ee68750767";

    /// An argument that fails to serialize fails the key, and the arguments
    /// after it do not hide it.
    #[test]
    fn a_failing_argument_fails_the_key() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("not a key"))
            }
        }
        let mut key = KeyBuilder::new();
        key.arg(&1u8).arg(&Refuses).arg(&2u8);
        assert!(matches!(key.finish(), Err(CodecError::Encode(_))));
        assert!(KeyDigest::of(&(1u8, Refuses)).is_err());
    }

    #[test]
    fn references_and_owned_values_digest_alike() {
        let owned = KeyDigest::of(&(42u64, String::from("alice"))).unwrap();
        let borrowed = KeyDigest::of(&(&42u64, "alice")).unwrap();
        assert_eq!(owned, borrowed);
    }

    #[test]
    fn large_arguments_spill_to_the_heap_with_the_same_digest_rules() {
        let big = "x".repeat(10 * STACK_KEY_BYTES);
        let a = KeyDigest::of(&(&big,)).unwrap();
        let b = KeyDigest::of(&(big.clone(),)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, KeyDigest::of(&(&big[1..],)).unwrap());
    }

    #[test]
    fn fingerprint_depends_on_every_input() {
        let base = fingerprint("app::m", "fn(u64)->u64", 0);
        assert_ne!(base, fingerprint("app::n", "fn(u64)->u64", 0));
        assert_ne!(base, fingerprint("app::m", "fn(u64)->u32", 0));
        assert_ne!(base, fingerprint("app::m", "fn(u64)->u64", 1));
        const AT_COMPILE_TIME: u64 = fingerprint("app::m", "fn(u64)->u64", 0);
        assert_eq!(base, AT_COMPILE_TIME);
    }

    #[test]
    fn redis_key_layout() {
        let k = redis_key(
            &redis_key_prefix("acgs", "auth", "load_session", 0xabc),
            KeyDigest(1),
        );
        assert_eq!(
            k,
            "acgs:auth:load_session:0000000000000abc:00000000000000000000000000000001"
        );
    }
}
