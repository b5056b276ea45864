"""Typed OTA errors. Each carries a short reason code that status reports publish as is."""

# Reason codes are stable strings: status reports, the audit log and docs use them verbatim.
# The manifest check (docs/FORMAT.md) raises FormatError as bad_format, unsupported or
# bad_geometry; SignatureError as bad_signature or unknown_key; PolicyError as wrong_board,
# downgrade, expired or too_large. The updater adds PolicyError wrong_base (a delta whose base is
# not the running image) and FormatError bad_patch (a deflate or delta chunk that does not decode
# to exactly its piece: corrupt stream, zip bomb, record outside its piece or the base); StateError as bad_history when no copy of the anti-downgrade
# floor can be read (every update is refused); FormatError as bad_config from config.check().
# Damage the device recovers from is reported in `fault` events, not raised: bad_progress,
# bad_state (a JSON state file), torn, bad_history (one copy), bad_config, no_memory.


class OTAError(Exception):
    """Base of every refusal; `reason` is the code a status report carries."""

    reason = "error"

    def __init__(self, reason=None, detail=""):
        if reason:
            self.reason = reason
        super().__init__(self.reason, detail)

    @property
    def detail(self):
        return self.args[1]


class FormatError(OTAError):
    """Malformed input: a manifest, signature, key or message that does not parse."""

    reason = "bad_format"


class SignatureError(OTAError):
    """The signature does not verify against any trusted key."""

    reason = "bad_signature"


class PolicyError(OTAError):
    """Authentic but not acceptable here: wrong board, downgrade, expired, too large."""

    reason = "policy"


class IntegrityError(OTAError):
    """What is in flash does not match the manifest's digest or size."""

    reason = "bad_digest"


class StateError(OTAError):
    """The device is not in a state to take this update (unconfirmed image, other update)."""

    reason = "bad_state"

