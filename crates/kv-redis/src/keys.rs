//! Key names under one prefix (the layout is in the crate doc and `docs/kv-layout.md`).

use newsrec_kv::Generation;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) prefix: String,
}

impl Keys {
    pub(crate) fn next(&self) -> String {
        format!("{}:next", self.prefix)
    }

    pub(crate) fn lock(&self) -> String {
        format!("{}:lock", self.prefix)
    }

    pub(crate) fn current(&self) -> String {
        format!("{}:current", self.prefix)
    }

    pub(crate) fn generations(&self) -> String {
        format!("{}:generations", self.prefix)
    }

    pub(crate) fn lists(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:lists", self.prefix)
    }

    pub(crate) fn similar(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:similar", self.prefix)
    }

    pub(crate) fn fallback(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:fallback", self.prefix)
    }

    pub(crate) fn info(&self, generation: Generation) -> String {
        format!("{}:g:{generation}:info", self.prefix)
    }

    /// Matches every generation-scoped key; the prefix holds no glob metacharacters.
    pub(crate) fn generation_pattern(&self) -> String {
        format!("{}:g:*", self.prefix)
    }

    /// The generation a key from [`Keys::generation_pattern`] belongs to.
    pub(crate) fn generation_of(&self, key: &[u8]) -> Option<Generation> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b":g:")?;
        let end = rest.iter().position(|byte| *byte == b':')?;
        std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_keys_name_their_generation() {
        let keys = Keys { prefix: "p".into() };
        assert_eq!(keys.generation_of(keys.lists(42).as_bytes()), Some(42));
        assert_eq!(keys.generation_of(keys.info(7).as_bytes()), Some(7));
        assert_eq!(keys.generation_of(keys.similar(9).as_bytes()), Some(9));
        assert_eq!(keys.generation_of(b"p:g:x:lists"), None);
        assert_eq!(keys.generation_of(b"pp:g:1:lists"), None);
        assert_eq!(keys.generation_of(keys.current().as_bytes()), None);
    }
}
