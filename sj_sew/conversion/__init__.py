"""S-ResNet (Hu, Tang, Pan 2018): ANN-to-SNN conversion of a residual network, and SpikingJelly's converter.

:func:`ann_resnet` builds the ReLU twin of the package's CIFAR-style nets (conv3x3-BN-ReLU stem, three
stages of post-activation basic blocks ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``, GAP, FC);
:func:`train_ann` trains it with sj_sew's training loop. :func:`convert` turns a trained one into an
:class:`SResNet`:

1. BN is folded into the conv before it (:func:`sj_sew.deploy.fold_conv_bn`).
2. Each ReLU site k (and the FC output) gets a scale lambda_k: as the authors' MATLAB code
   (github:yangfan-hu/spiking-deep-residual-networks), element floor(0.999 n) of all n sorted activations on
   the calibration data, zeros and negatives included (``scale_method='positive'``: the 99.9th percentile of
   the positive values only). The input has lambda = 1: the analog image is fed unscaled as a constant current.
3. Every layer is rescaled, W <- W * lambda_in / lambda_out, b <- b / lambda_out. In a block the last conv
   uses lambda at the ReLU after the sum, and the shortcut is normalised the same way: a conv shortcut is
   rescaled like any layer, an identity shortcut is multiplied by lambda_block_in / lambda_block_out
   (S-ResNet's shortcut normalisation), so both summed paths are in the same units.
4. ReLUs become IF neurons (threshold 1, reset by subtraction, membrane starting at 0.5 x threshold, the
   compensation for the discretisation error). An IF neuron follows the global average pooling (the authors';
   ``pool_neuron=False`` feeds the pooled rates to the FC). The FC layer drives IF output neurons of the same
   kind, normalised by its own scale.

Readout: ``'count+softmax'`` (default, the authors') ranks classes by output spike count plus the softmax of
the output membrane, which breaks ties between equal counts without overturning a count.
``'count+membrane'`` adds the raw membrane: with reset by subtraction, count + membrane = 0.5 + the total
input current, the same ranking as a non-spiking accumulating last layer. ``'count'`` uses the spike count
alone (ties go to the lowest class index).

:func:`spikingjelly_convert` runs SpikingJelly's own ``ann2snn`` converter (both release lines) on the same
ANN as a baseline; :func:`accuracy_vs_time` evaluates either kind of SNN at several T in one simulation.

Modules: :mod:`.ann` (the ANN), :mod:`.sresnet` (the conversion), :mod:`.baseline` (SpikingJelly's),
:mod:`.evaluate` (accuracies).
"""
from .ann import ANNBasicBlock, ANNResNet, ann_resnet, train_ann
from .baseline import AccumulatedOutput, spikingjelly_convert
from .evaluate import accuracy_vs_time, ann_accuracy
from .sresnet import READOUTS, SCALE_METHODS, SBlock, SResNet, SubtractiveIF, activation_scales, convert

__all__ = ["ANNBasicBlock", "ANNResNet", "ann_resnet", "train_ann", "ann_accuracy", "SubtractiveIF", "SBlock",
           "SResNet", "activation_scales", "convert", "READOUTS", "SCALE_METHODS", "spikingjelly_convert", "AccumulatedOutput",
           "accuracy_vs_time"]
