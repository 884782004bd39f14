"""libstdc++'s std::sort, step for step.

std::sort is not stable: Orthanc sorts the instances of a series by their
index in the series with it, and when two instances share an index, the
order they end up in (and so the number each gets in its file name) is the
one this introsort leaves.  Its insertion sort keeps ties in order for up to
16 elements; above that, partitioning shuffles them deterministically.
"""

_THRESHOLD = 16


def libstdcxx_sort(items, key):
    """Sort ``items`` in place by ``key`` exactly as GCC's std::sort with
    ``comp(a, b) = key(a) < key(b)`` would."""
    keyed = [(key(item), item) for item in items]
    _Sorter(keyed).sort()
    items[:] = [item for _, item in keyed]


class _Sorter:
    def __init__(self, array):
        self.a = array

    def less(self, x, y):
        return x[0] < y[0]

    def swap(self, i, j):
        a = self.a
        a[i], a[j] = a[j], a[i]

    def sort(self):
        n = len(self.a)
        if n == 0:
            return
        self.introsort_loop(0, n, 2 * (n.bit_length() - 1))
        if n > _THRESHOLD:
            self.insertion_sort(0, _THRESHOLD)
            for i in range(_THRESHOLD, n):
                self.unguarded_linear_insert(i)
        else:
            self.insertion_sort(0, n)

    def introsort_loop(self, first, last, depth_limit):
        while last - first > _THRESHOLD:
            if depth_limit == 0:
                self.make_heap(first, last)
                self.sort_heap(first, last)
                return
            depth_limit -= 1
            middle = first + (last - first) // 2
            self.move_median_to_first(first, first + 1, middle, last - 1)
            cut = self.unguarded_partition(first + 1, last, first)
            self.introsort_loop(cut, last, depth_limit)
            last = cut

    def move_median_to_first(self, result, a, b, c):
        A, B, C = self.a[a], self.a[b], self.a[c]
        if self.less(A, B):
            if self.less(B, C):
                self.swap(result, b)
            elif self.less(A, C):
                self.swap(result, c)
            else:
                self.swap(result, a)
        elif self.less(A, C):
            self.swap(result, a)
        elif self.less(B, C):
            self.swap(result, c)
        else:
            self.swap(result, b)

    def unguarded_partition(self, first, last, pivot):
        a = self.a
        while True:
            while self.less(a[first], a[pivot]):
                first += 1
            last -= 1
            while self.less(a[pivot], a[last]):
                last -= 1
            if not first < last:
                return first
            self.swap(first, last)
            first += 1

    def insertion_sort(self, first, last):
        a = self.a
        for i in range(first + 1, last):
            if self.less(a[i], a[first]):
                value = a[i]
                a[first + 1:i + 1] = a[first:i]
                a[first] = value
            else:
                self.unguarded_linear_insert(i)

    def unguarded_linear_insert(self, last):
        a = self.a
        value = a[last]
        following = last - 1
        while self.less(value, a[following]):
            a[last] = a[following]
            last = following
            following -= 1
        a[last] = value

    # -- the heap sort std::sort falls back to when partitions go too deep --

    def adjust_heap(self, first, hole, length, value):
        a = self.a
        top = hole
        child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if self.less(a[first + child], a[first + child - 1]):
                child -= 1
            a[first + hole] = a[first + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[first + hole] = a[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2
        while hole > top and self.less(a[first + parent], value):
            a[first + hole] = a[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        a[first + hole] = value

    def make_heap(self, first, last):
        length = last - first
        if length < 2:
            return
        parent = (length - 2) // 2
        while True:
            self.adjust_heap(first, parent, length, self.a[first + parent])
            if parent == 0:
                return
            parent -= 1

    def sort_heap(self, first, last):
        a = self.a
        while last - first > 1:
            last -= 1
            value = a[last]
            a[last] = a[first]
            self.adjust_heap(first, 0, last - first, value)
