//! The partition key scheme: every item is addressed by one string `pk`.
//!
//! The generation number is decimal and ends at the next '#', and the user id (article id)
//! comes last after the fixed "u#" ("s#") marker, so no two (generation, kind, id) triples, no
//! generation's "info"/"fallback" item and no control item ("current", "counter", "generations",
//! "lock") can share a key. No escaping is needed: a string partition key may hold any UTF-8 (up
//! to 2048 bytes; user ids are at most 256).

use newsrec_kv::Generation;

pub(crate) const POINTER_KEY: &str = "current";
pub(crate) const COUNTER_KEY: &str = "counter";
pub(crate) const INDEX_KEY: &str = "generations";
pub(crate) const LOCK_KEY: &str = "lock";

pub(crate) fn generation_prefix(generation: Generation) -> String {
    format!("g#{generation}#")
}

pub(crate) fn user_key(generation: Generation, user_id: &str) -> String {
    format!("g#{generation}#u#{user_id}")
}

pub(crate) fn similar_key(generation: Generation, article_id: &str) -> String {
    format!("g#{generation}#s#{article_id}")
}

pub(crate) fn info_key(generation: Generation) -> String {
    format!("g#{generation}#info")
}

pub(crate) fn fallback_key(generation: Generation) -> String {
    format!("g#{generation}#fallback")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_collide() {
        assert_eq!(user_key(12, "a#b"), "g#12#u#a#b");
        assert_ne!(user_key(1, "2#u#x"), user_key(12, "x"));
        assert_ne!(user_key(1, "info"), info_key(1));
        assert!(user_key(3, "").starts_with(&generation_prefix(3)));
        assert!(!user_key(13, "x").starts_with(&generation_prefix(1)));
        assert_eq!(similar_key(12, "a#b"), "g#12#s#a#b");
        assert_ne!(similar_key(1, "x"), user_key(1, "x"));
        assert_ne!(similar_key(1, "2#s#x"), similar_key(12, "x"));
        assert_ne!(similar_key(1, ""), info_key(1));
        assert_ne!(user_key(1, "s#x"), similar_key(1, "x"));
        assert!(similar_key(3, "").starts_with(&generation_prefix(3)));
    }
}
