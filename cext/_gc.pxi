# Shared by the batch loops: keep the cyclic GC off the lists a loop works on.
#
# A loop that allocates (tuples, user results) triggers young-generation
# collections, and each one rescans every young container: the batch being
# read and the list being built, O(batch) work per collection for lists no
# user code can reach. Untracking them for the loop's duration removes that
# (about 10% of a keyed running sum); their items stay tracked, so nothing
# is collected early, and the lists are tracked again before they escape.
cdef extern from "Python.h":
    void PyObject_GC_Track(object)
    void PyObject_GC_UnTrack(object)
    int PyObject_GC_IsTracked(object)


cdef inline bint _hide(list items):
    """Untrack ``items`` from the cyclic GC; return whether it was tracked."""
    if PyObject_GC_IsTracked(items):
        PyObject_GC_UnTrack(items)
        return True
    return False


cdef inline void _unhide(list items, bint was_tracked):
    """Undo :func:`_hide`."""
    if was_tracked and not PyObject_GC_IsTracked(items):
        PyObject_GC_Track(items)
