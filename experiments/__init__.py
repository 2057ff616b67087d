"""experiments: the shipped YAML profiles (a resource folder, no code).

It is a package only so that an installed (non-editable) s4fuse carries the profiles as package
data; ``runtime.profiles.resolve_experiment`` finds them with importlib.resources.
"""
