# The Fashion-MNIST studies' encoder (configs/study/; docs/transfer_study.md) for the
# transfer configs: values only, all named tiny_*, so that a config lists this file
# beside a recipe config without duplicate keys.
# ViT with 192-d tokens, 4 blocks, 3 heads, MLP 768, patch 4 (8 x 8 patches at 32 px)
tiny_arch = dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768)
tiny_patch_size = 4
# the encoders' pretraining normalisation: per-channel statistics of the 60,000
# Fashion-MNIST training images (gray, so equal; configs/study/_base_/)
tiny_mean, tiny_std = [72.94] * 3, [90.02] * 3
# ConMIM's BEiT-style encoder as the ConMIM transfer recipes build it
# (configs/cls/conmim_vit-base-p16_8xb128-coslr-100e_in1k.py,
# configs/seg/conmim_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py): relative
# position bias per block, copied from the pretraining's shared table and resized to
# the downstream grid; layer scale; the momentum encoder. Each config adds img_size
# and its outputs.
tiny_conmim_backbone = dict(
    _delete_=True,
    type='TransferBEiTViT',
    arch=tiny_arch,
    patch_size=tiny_patch_size,
    drop_path_rate=0.1,
    use_abs_pos_emb=False,
    use_rel_pos_bias=True,
    use_shared_rel_pos_bias=False,
    layer_scale_init_value=0.1,  # overwritten by the loaded gamma_1/gamma_2
    use_sdpa=True,
    init_cfg=dict(
        type='PretrainedEncoder',
        checkpoint=None,
        encoder='target',
        allowed_missing=[r'relative_position_index$']))
# no weight decay on ConMIM's extra tensors, as its fine-tuning recipe
tiny_conmim_no_decay = {
    '.cls_token': dict(decay_mult=0.0),
    'relative_position_bias_table': dict(decay_mult=0.0),
}
# the scenes' classes (tools/study/fashion_mnist_scenes.py): Fashion-MNIST's, in
# MMPretrain's FashionMNIST order (category ids / label values 1..10)
tiny_scene_classes = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
                      'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
