"""Development-only code: the local chain, localstripe and the development OpenID Provider as
child processes, the headless development sign-in, demo data, ``serve``'s local bootstrap and
throwaway databases. Production code imports nothing from here (``.importlinter``); ``cli``
does, lazily, for ``serve`` in development, and so do the tests and the benchmarks."""
