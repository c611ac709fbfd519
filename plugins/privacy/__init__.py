"""Privacy risks (P1 membership, P2 attribute, P3 reconstruction, P4 distribution inference) and defenses."""
