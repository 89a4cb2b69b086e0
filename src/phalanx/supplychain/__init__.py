"""Supply-chain security: scanning model files before anything loads them.

``phalanx.supplychain.scan`` holds the scanners; the first is a static pickle analyser
(:func:`phalanx.supplychain.scan.analyse_pickle`) that never unpickles what it reads. This
package imports neither torch nor NumPy: scanning a model file must not need them.
"""
