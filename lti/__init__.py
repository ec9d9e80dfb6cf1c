"""LTI 1.3 / LTI Advantage: the platform as a tool inside an LMS (docs/lti.md)."""
