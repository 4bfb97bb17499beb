"""tito: the command line of the tinyq course (export, test, status, notebooks, lab, doctor, ...)."""
