//! Stub; see the module owner.
