"""Built-in plugins shipped with interplay (imported as ``interplay.plugins``)."""
