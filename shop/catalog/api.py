"""Read-only catalog API: products (filtered, paginated) and the category tree."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import get_script_prefix
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api.pagination import StandardPagination
from shop.api.schema import detail_response, validation_response
from shop.api.selectors import (
    ProductFilters,
    UnknownFilterValue,
    category_list_api,
    category_tree_fresh_get,
    product_list_api,
)

from .models import Category
from .selectors import product_get
from .serializers import (
    CategoryDetailSerializer,
    CategoryListParamsSerializer,
    CategorySerializer,
    ProductDetailSerializer,
    ProductListParamsSerializer,
    ProductSerializer,
)


def _params(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """Validated query parameters; a bad value is a 400 naming the parameter."""
    params = serializer_class(data=request.query_params.dict())
    params.is_valid(raise_exception=True)
    return params.validated_data


class ProductListApi(generics.ListAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    serializer_class = ProductSerializer
    pagination_class = StandardPagination

    def get_queryset(self):
        params = _params(ProductListParamsSerializer, self.request)
        try:
            return product_list_api(filters=ProductFilters(**params))
        except UnknownFilterValue as exc:
            raise serializers.ValidationError({exc.field: [str(exc)]}) from exc

    @extend_schema(
        operation_id="products_list",
        parameters=[ProductListParamsSerializer],
        responses={200: ProductSerializer(many=True), 400: validation_response("Bad filter.", name="FilterError")},
        summary="List active products",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class ProductDetailApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        operation_id="products_retrieve",
        responses={200: ProductDetailSerializer, 404: detail_response("No such (active) product.")},
        summary="One product",
    )
    def get(self, request: Request, pk: int) -> Response:
        product = product_get(pk=pk)
        product.breadcrumbs = category_tree_fresh_get().ancestors(product.category_id)
        return Response(ProductDetailSerializer(product).data)


class CategoryListApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        operation_id="categories_list",
        parameters=[CategoryListParamsSerializer],
        responses={200: CategorySerializer(many=True), 400: validation_response("Unknown parent.", name="ParentError")},
        summary="The category tree, flat (roots first, then by depth and name)",
    )
    def get(self, request: Request) -> Response:
        params = _params(CategoryListParamsSerializer, request)
        parent = params.get("parent")
        tree = category_tree_fresh_get(slug=parent)
        # serialised once per tree, parent and script prefix (the nodes' URLs): the tree changes rarely, and
        # serialising its 176 nodes on every request was half of this endpoint's CPU
        key = ("api.categories", parent, get_script_prefix())
        data = tree.derived.get(key)
        if data is None:
            try:
                nodes = category_list_api(parent=parent, tree=tree)
            except UnknownFilterValue as exc:
                raise serializers.ValidationError({"parent": [str(exc)]}) from exc
            data = tree.derived[key] = list(CategorySerializer(nodes, many=True).data)
        return Response(data)


class CategoryDetailApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        operation_id="categories_retrieve",
        responses={200: CategoryDetailSerializer, 404: detail_response("No such category.")},
        summary="One category with its ancestors and children",
    )
    def get(self, request: Request, slug: str) -> Response:
        category = get_object_or_404(Category.objects.only("id", "description"), slug=slug)
        tree = category_tree_fresh_get(slug=slug)
        node = tree.get(category.pk)
        body = {
            "id": node.id,
            "name": node.name,
            "slug": node.slug,
            "parent_id": node.parent_id,
            "depth": node.depth,
            "url": node.url,
            "description": category.description,
            "ancestors": tree.ancestors(node.id)[:-1],
            "children": tree.children_of(node.id),
        }
        return Response(CategoryDetailSerializer(body).data)
