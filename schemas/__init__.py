# Empty on purpose: editable installs need it so importlib.resources can list the .avsc files.
