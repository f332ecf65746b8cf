"""lmhtc runtime: the bit-accurate integer event-driven simulator of the compiled IR.

The simulator itself arrives with the integer-lowering issue; this package is
installed now so the layout of docs/design.md §11 holds from the first commit.
"""
