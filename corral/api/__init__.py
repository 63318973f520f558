"""corral as a library: one typed options object and one function per command.

    from corral import api
    result = api.evaluate(api.EvalOptions(model=["smollm2-135m-instruct"], task="arithmetic",
                                          limit=20))

The CLI (`cli/`) parses arguments into these options and calls these functions; the coming
service (`serve/`) calls them the same way. A function never prints: it returns a typed result
(what the CLI prints is made from it) and says notes through `warnings.warn(..., ConfigNote)`,
which the CLI shows as `corral: note: ...` lines. Bad options raise `CorralError` with one
sentence naming the option and the fix, before anything is loaded or written.

Each command's options and function live in the lowest package whose rank allows them (a
synthesis command in `synth/`, a judge command in `feedback/`); the modules here re-export
them, and wire the commands that chain packages of one rank (evaluation with strategies,
ReST-EM's rounds), so a Python user imports everything from `corral.api`.
"""
