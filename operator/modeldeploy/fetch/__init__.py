"""The storage initializer: ``modeldeploy fetch`` fills a Triton model repository from ``spec.model.uri``.

It runs as the ``fetch-model`` init container of every serving pod (same image as the operator), so a
model that cannot be fetched stops the pod before Triton starts, and the one-line cause lands in the
pod status through the termination log. Modules:

- ``uri``: what each URI scheme means, parsed without I/O (the renderer shares its pvc:// mount convention);
- ``errors``: the exception hierarchy; ``str(error)`` is the one-line cause;
- ``sources``: one reader per scheme (file, pvc, http(s), s3, gs), each writing a file or a folder;
- ``layout``: where things go in the repository, sha256 checks, atomic install;
- ``command``: the CLI subcommand.

This package is imported by the renderer only through ``uri`` and ``errors``, which do no I/O; keep this
``__init__`` free of imports so that stays true.
"""
