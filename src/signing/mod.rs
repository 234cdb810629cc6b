//! Token signing keys: generation, the key store port with its file and sealed-database adapters,
//! rotation and the JWKS document.
//!
//! Keys are held parsed (an `aws-lc-rs` key pair per key) so signing never re-parses a private key.
//! The ring's state is a pure function of the keys' activation times, the clock and the policy:
//! a key is *next* (published, not yet signing), *current* (signing), *previous* (published until
//! every token it signed has expired) or *retired*. The module must not know about HTTP; it
//! produces the JWKS as a value that `http` serialises.

pub mod jwk;
pub mod key;
pub mod ring;
pub mod sealed;
pub mod store;

pub use key::{Algorithm, KeyError, SigningKey};
pub use ring::{KeyEntry, KeyRing, KeyRingHandle, KeyState};
pub use sealed::{Kek, SealedKeyStore};
pub use store::{FileKeyStore, KeyStore, KeyStoreError, Rotation};
