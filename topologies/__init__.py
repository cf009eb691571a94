"""The topologies that ship with mirrorlab, as package data: `Lab("default")` and
`mirrorlab up default` load `default.yaml` from here."""
