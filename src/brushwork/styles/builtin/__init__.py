"""Built-in styles; each module holds one or more @style functions.

Discovered by brushwork.styles.registry, never imported for side effects.
"""
