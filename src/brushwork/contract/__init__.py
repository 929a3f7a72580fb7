"""Contract types that cross process and layer boundaries: families, events, version.

They sit at the bottom of the layering (beside `brushwork.plan`), so the
engine, the job server and the front doors can all use them without reaching
sideways or up. Pure Python: no torch.
"""
