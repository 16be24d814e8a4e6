//! The words the store keeps in text columns (`submissions.verdict`, `studios.verdict`,
//! `findings.severity`), as types: a misspelt verdict is a compile error, not a row the
//! digest silently leaves out. Each type says its stored word (`as_str`, `Display`) and reads
//! it back (`FromStr`; a word the schema's CHECK would refuse is an error). Comparing with the
//! word itself (`verdict == "accepted"`) stays possible for tests and SQL-minded readers.
use std::fmt;
use std::str::FromStr;

use crate::core::findings::Severity;

/// A stored word that is not one of the type's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a stored {what}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

macro_rules! stored_words {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(UnknownWord { what: $what, word: other.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

stored_words! {
    /// What became of a mail (`submissions.verdict`).
    MailVerdict, "mail verdict" {
        Accepted = "accepted",
        Rejected = "rejected",
        /// Recorded without an outcome: over the size limit, not a message, the core failed,
        /// or the same mail again.
        Ignored = "ignored",
        /// No documents (`submission.no_documents`): a question, a thank-you, a cover letter.
        NotASubmission = "not_a_submission",
    }
}

stored_words! {
    /// What became of a studio version (`studios.verdict`).
    StudioVerdict, "studio verdict" {
        Accepted = "accepted",
        Rejected = "rejected",
    }
}

/// A record says its verdict; one built field by field starts as having no outcome.
impl Default for MailVerdict {
    fn default() -> MailVerdict {
        MailVerdict::Ignored
    }
}

impl From<crate::core::Verdict> for MailVerdict {
    fn from(v: crate::core::Verdict) -> MailVerdict {
        match v {
            crate::core::Verdict::Accepted => MailVerdict::Accepted,
            crate::core::Verdict::Rejected => MailVerdict::Rejected,
            crate::core::Verdict::NotASubmission => MailVerdict::NotASubmission,
        }
    }
}

/// `findings.severity`: the core's own type, read back from its word.
pub fn severity(word: &str) -> Result<Severity, UnknownWord> {
    Severity::ALL.iter().copied().find(|s| s.as_str() == word).ok_or_else(|| UnknownWord { what: "severity", word: word.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for v in MailVerdict::ALL {
            assert_eq!(v.as_str().parse::<MailVerdict>(), Ok(*v));
            assert_eq!(*v, v.as_str());
        }
        for v in StudioVerdict::ALL {
            assert_eq!(v.to_string().parse::<StudioVerdict>(), Ok(*v));
        }
        for s in Severity::ALL {
            assert_eq!(severity(s.as_str()), Ok(*s));
        }
        assert_eq!("Accepted".parse::<MailVerdict>().unwrap_err().word, "Accepted");
        assert!(severity("fatal").is_err());
        assert_eq!(MailVerdict::from(crate::core::Verdict::NotASubmission), "not_a_submission");
    }
}
