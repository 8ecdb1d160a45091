"""Code generated files carry: real functions and classes, copied into each file with
`inspect.getsource`. Imports torch only, never the compiler."""
