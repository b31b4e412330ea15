"""The platform's CDK constructs (L3): each one a deployable concern, configured by arguments, never by context."""
