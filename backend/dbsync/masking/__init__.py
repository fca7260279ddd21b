"""Masking personal data: the rules file (`rules`), its fragments checked before they reach prod
(`fragments`), each strategy as SQL (`strategies`), the key handed over out of band (`key`),
the gate's personal-data patterns (`gate`), the rules bound to a catalog (`plan`) and the
in-place path for a restored snapshot (`inplace`). See docs/masking.md."""
