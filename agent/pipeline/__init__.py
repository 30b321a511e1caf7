"""One fix, stage by stage: reproduce, localize, draft, explore, validate, confirm."""
